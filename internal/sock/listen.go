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
func Listen(ep Endpoint, reusePort bool) (int, error) {
	family, sa, err := sockaddr(ep)
	if err != nil {
		return -1, err
	}
	if family == unix.AF_UNIX {
		if err := removeStaleSocket(ep.Path); err != nil {
			return -1, err
		}
	}
	fd, err := bindSocket(family, sa, ep, reusePort)
	if err != nil {
		return -1, err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %s: %w", ep, err)
	}
	return fd, nil
}

// ProbeBind tells whether a listener could bind the TCP endpoint ep now, as
// Listen would with the same reusePort, by binding a socket with Listen's
// options and closing it at once. The socket never listens, so no
// connection can reach it, and closing a socket that never connected
// leaves nothing behind. The error is Listen's: it wraps EADDRINUSE when a
// listening socket holds the port and would not share it. On Linux, while
// the probe holds the port (microseconds), other sockets with SO_REUSEADDR,
// as listeners have, can still bind it.
func ProbeBind(ep Endpoint, reusePort bool) error {
	family, sa, err := sockaddr(ep)
	if err != nil {
		return err
	}
	if family == unix.AF_UNIX {
		return fmt.Errorf("probe %s: not a TCP address", ep)
	}
	fd, err := bindSocket(family, sa, ep, reusePort)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

func sockaddr(ep Endpoint) (family int, sa unix.Sockaddr, err error) {
	switch ep.Network {
	case "tcp4":
		return unix.AF_INET, &unix.SockaddrInet4{Port: ep.Port, Addr: ep.IP.As4()}, nil
	case "tcp6":
		return unix.AF_INET6, &unix.SockaddrInet6{Port: ep.Port, Addr: ep.IP.As16()}, nil
	case "unix":
		return unix.AF_UNIX, &unix.SockaddrUnix{Name: ep.Path}, nil
	}
	return 0, nil, fmt.Errorf("unknown network %q", ep.Network)
}

// bindSocket makes a non-blocking socket with the options of a listener
// and binds it to sa. On failure the socket is closed.
func bindSocket(family int, sa unix.Sockaddr, ep Endpoint, reusePort bool) (int, error) {
	fd, err := Socket(family)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := setListenerOptions(fd, family, reusePort); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", ep, errors.Unwrap(os.NewSyscallError("bind", err)))
	}
	return fd, nil
}

func setListenerOptions(fd, family int, reusePort bool) error {
	if family == unix.AF_UNIX {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return os.NewSyscallError("setsockopt SO_REUSEADDR", err)
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return os.NewSyscallError("setsockopt SO_REUSEPORT", err)
		}
	}
	if family == unix.AF_INET6 {
		// [::] means IPv6 only, as the address says; bind 0.0.0.0 as well
		// with a second instance if both are wanted.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return os.NewSyscallError("setsockopt IPV6_V6ONLY", err)
		}
	}
	return nil
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
