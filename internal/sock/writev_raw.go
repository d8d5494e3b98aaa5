//go:build linux || dragonfly || freebsd || netbsd

package sock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// IovMax is the most buffers one writev takes (IOV_MAX on Linux and the
// BSDs).
const IovMax = 1024

// Vectored gathers buffers into one writev without allocating: the iovec
// array is reused from call to call.
type Vectored struct {
	iov []unix.Iovec
}

// Writev writes bufs (at most IovMax) to fd with one system call and
// returns how many bytes the kernel took. It retries EINTR and returns
// EAGAIN as an error.
func (v *Vectored) Writev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) == 1 {
		return write(fd, bufs[0])
	}
	if cap(v.iov) < len(bufs) {
		v.iov = make([]unix.Iovec, len(bufs), IovMax)
	}
	iov := v.iov[:len(bufs)]
	for i, b := range bufs {
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
	}
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if errno == unix.EINTR {
			continue
		}
		// Drop the pointers so the array does not keep pooled buffers alive.
		clear(iov)
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}
