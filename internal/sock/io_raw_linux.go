package sock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The data path's reads and writes are on non-blocking sockets: they never
// wait, so they are made as raw system calls, skipping the bookkeeping the
// Go scheduler does for calls that might block (about a third of the cost
// of a small read here). Only the poller's wait is a blocking call.
//
// They are recvfrom and sendto rather than read and write: the socket
// calls go to the socket layer directly, where read and write pass through
// the file layer first (position lock, rw_verify_area, fsnotify), 1–2 % of
// a small echo's CPU here (bench/PROFILE.md); and sendto takes
// MSG_NOSIGNAL, so a write to a reset connection returns EPIPE without
// raising SIGPIPE.

// Read reads from fd into p (which must not be empty), retrying EINTR.
// EAGAIN comes back as an error; n == 0 with a nil error is end of stream.
func Read(fd int, p []byte) (int, error) {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
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
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}
