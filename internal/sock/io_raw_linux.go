package sock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The data path's reads and writes are on non-blocking sockets: they never
// wait, so they are made as raw system calls, skipping the bookkeeping the
// Go scheduler does for calls that might block (about a third of the cost
// of a small read here). Only the poller's wait is a blocking call.

// Read reads from fd into p (which must not be empty), retrying EINTR.
// EAGAIN comes back as an error; n == 0 with a nil error is end of stream.
func Read(fd int, p []byte) (int, error) {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

func write(fd int, p []byte) (int, error) {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}
