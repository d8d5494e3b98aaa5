//go:build unix

package sock

import "golang.org/x/sys/unix"

// ShutdownWrite sends FIN: the peer reads end of stream once it has read
// everything sent before.
func ShutdownWrite(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) }

// Close closes fd. It is never retried: on Linux the descriptor is gone
// even when close reports EINTR, and retrying could close a descriptor
// another goroutine has just been given.
func Close(fd int) error { return unix.Close(fd) }

// SocketError returns the pending error of socket fd (SO_ERROR).
func SocketError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return unix.Errno(v)
	}
	return nil
}

// Unread is the number of bytes received on socket fd and not yet read.
func Unread(fd int) int {
	n, err := unix.IoctlGetInt(fd, fionread)
	if err != nil {
		return 0
	}
	return n
}

// DescriptorLimit is the soft limit on open descriptors (RLIMIT_NOFILE),
// or 1024 if it cannot be read.
func DescriptorLimit() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 1024
	}
	return int(rl.Cur)
}

// Unsent is the number of bytes written to socket fd that the peer has not
// acknowledged yet, or -1 where the platform cannot tell.
func Unsent(fd int) int {
	if siocoutq == 0 {
		return -1
	}
	n, err := unix.IoctlGetInt(fd, siocoutq)
	if err != nil {
		return -1
	}
	return n
}

// Write writes p (which must not be empty) to fd, retrying EINTR; EAGAIN
// comes back as an error.
func Write(fd int, p []byte) (int, error) { return write(fd, p) }
