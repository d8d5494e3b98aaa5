//go:build unix

package sock

import "golang.org/x/sys/unix"

// Read reads from fd into p, retrying EINTR. EAGAIN comes back as an
// error; n == 0 with a nil error is end of stream.
func Read(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

func write(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

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
