//go:build darwin || openbsd

package sock

import "golang.org/x/sys/unix"

// IovMax is the most buffers one writev takes (IOV_MAX on the BSDs).
const IovMax = 1024

// Vectored gathers buffers into one writev. darwin and openbsd make system
// calls through libc, so this goes through x/sys rather than a raw call.
type Vectored struct{}

// Writev writes bufs (at most IovMax) to fd with one system call and
// returns how many bytes the kernel took. It retries EINTR and returns
// EAGAIN as an error.
func (v *Vectored) Writev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) == 1 {
		return write(fd, bufs[0])
	}
	for {
		n, err := unix.Writev(fd, bufs)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}
