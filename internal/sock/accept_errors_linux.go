package sock

import "golang.org/x/sys/unix"

// isPlatformConnectionError adds the Linux-only errors accept(2) lists
// among those to retry.
func isPlatformConnectionError(err error) bool { return err == unix.ENONET }
