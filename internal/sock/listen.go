//go:build unix

package sock

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// backlog asks for the most the kernel allows: listen(2) silently caps it
// at net.core.somaxconn (kern.ipc.somaxconn on the BSDs).
const backlog = 1<<16 - 1

// Listen binds a non-blocking listener. With reusePort, several listeners
// may bind the same TCP address and the kernel spreads connections over
// them. A Unix socket file left by a dead process is replaced; one that a
// live process still accepts on is not.
func Listen(ep Endpoint, reusePort bool) (fd int, err error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	switch ep.Network {
	case "tcp4":
		sa = &unix.SockaddrInet4{Port: ep.Port, Addr: ep.IP.As4()}
	case "tcp6":
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: ep.Port, Addr: ep.IP.As16()}
	case "unix":
		family = unix.AF_UNIX
		sa = &unix.SockaddrUnix{Name: ep.Path}
		if err := removeStaleSocket(ep.Path); err != nil {
			return -1, err
		}
	default:
		return -1, fmt.Errorf("unknown network %q", ep.Network)
	}
	fd, err = Socket(family)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	if family != unix.AF_UNIX {
		if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return -1, os.NewSyscallError("setsockopt SO_REUSEADDR", err)
		}
		if reusePort {
			if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				return -1, os.NewSyscallError("setsockopt SO_REUSEPORT", err)
			}
		}
		if family == unix.AF_INET6 {
			// [::] means IPv6 only, as the address says; bind 0.0.0.0 as well
			// with a second instance if both are wanted.
			if err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
				return -1, os.NewSyscallError("setsockopt IPV6_V6ONLY", err)
			}
		}
	}
	if err = unix.Bind(fd, sa); err != nil {
		return -1, fmt.Errorf("bind %s: %w", ep, errors.Unwrap(os.NewSyscallError("bind", err)))
	}
	if err = unix.Listen(fd, backlog); err != nil {
		return -1, fmt.Errorf("listen %s: %w", ep, err)
	}
	return fd, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("bind unix:%s: the path exists and is not a socket", path)
	}
	probe, err := Socket(unix.AF_UNIX)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(probe)
	// The probe is non-blocking: a live listener with a full backlog answers
	// EAGAIN, which still means it is alive.
	err = unix.Connect(probe, &unix.SockaddrUnix{Name: path})
	if err == nil || err == unix.EAGAIN || err == unix.EINPROGRESS || err == unix.EINTR {
		return fmt.Errorf("bind unix:%s: %w (another process is serving it)", path, unix.EADDRINUSE)
	}
	if err != unix.ECONNREFUSED {
		return fmt.Errorf("bind unix:%s: probing the existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bind unix:%s: removing the stale socket: %w", path, err)
	}
	return nil
}

// LocalEndpoint is the address fd is bound to; it resolves port 0.
func LocalEndpoint(fd int, network string) (Endpoint, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return Endpoint{}, os.NewSyscallError("getsockname", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return Endpoint{Network: network, IP: netip.AddrFrom4(sa.Addr), Port: sa.Port}, nil
	case *unix.SockaddrInet6:
		return Endpoint{Network: network, IP: netip.AddrFrom16(sa.Addr), Port: sa.Port}, nil
	case *unix.SockaddrUnix:
		return Endpoint{Network: network, Path: sa.Name}, nil
	}
	return Endpoint{}, fmt.Errorf("getsockname: unexpected address %T", sa)
}

// IsConnectionAcceptError reports accept errors that concern the one
// connection being accepted, not the listener: it was aborted, a firewall
// rule refused it (EPERM), or, as accept(2) on Linux warns, a network
// error already pending on it was passed on. The next accept may succeed.
func IsConnectionAcceptError(err error) bool {
	switch err {
	case unix.ECONNABORTED, unix.EINTR, unix.EPROTO, unix.EPERM, unix.ENETDOWN,
		unix.ENETUNREACH, unix.EHOSTDOWN, unix.EHOSTUNREACH, unix.ENOPROTOOPT,
		unix.EOPNOTSUPP, unix.ETIMEDOUT, unix.ECONNRESET:
		return true
	}
	return isPlatformConnectionError(err)
}

// IsResourceError reports accept errors that mean the process or system is
// out of descriptors or memory: accepting must pause, not spin.
func IsResourceError(err error) bool {
	return err == unix.EMFILE || err == unix.ENFILE || err == unix.ENOBUFS || err == unix.ENOMEM
}
