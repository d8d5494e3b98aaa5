package loadgen

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The data path's reads and writes are on non-blocking sockets: they never
// wait, so they are raw system calls, skipping the bookkeeping the Go
// scheduler does around calls that might block. Only the poller's wait is
// a blocking call. p must not be empty. EINTR and EAGAIN come back as
// errors for the caller to tell apart.

func readFd(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func writeFd(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
