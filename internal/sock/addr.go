// Package sock holds the socket plumbing under the loops: parsing listen
// addresses, binding listeners, accepting without allocating, and a compact
// peer address a connection can keep for its whole life.
package sock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Endpoint is a parsed listen address.
type Endpoint struct {
	Network string // "tcp4", "tcp6" or "unix"
	IP      netip.Addr
	Port    int
	Path    string // for "unix"
}

func (e Endpoint) String() string {
	if e.Network == "unix" {
		return "unix:" + e.Path
	}
	return netip.AddrPortFrom(e.IP, uint16(e.Port)).String()
}

// ParseEndpoint parses "host:port", "[v6]:port" or "unix:/path". An empty
// host means every IPv4 interface; a host name is resolved once, here.
func ParseEndpoint(s string) (Endpoint, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return Endpoint{}, errors.New("unix socket path is empty")
		}
		if len(path) > maxUnixPath {
			return Endpoint{}, fmt.Errorf("unix socket path is longer than %d bytes", maxUnixPath)
		}
		return Endpoint{Network: "unix", Path: path}, nil
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("address %q: want host:port, [ipv6]:port or unix:/path", s)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return Endpoint{}, fmt.Errorf("address %q: port %q is not a number from 0 to 65535", s, portStr)
	}
	var ip netip.Addr
	switch host {
	case "":
		ip = netip.IPv4Unspecified()
	default:
		if ip, err = netip.ParseAddr(host); err != nil {
			ips, rerr := net.LookupIP(host)
			if rerr != nil || len(ips) == 0 {
				return Endpoint{}, fmt.Errorf("address %q: cannot resolve host %q", s, host)
			}
			ip, _ = netip.AddrFromSlice(ips[0])
		}
	}
	if ip.Zone() != "" {
		return Endpoint{}, fmt.Errorf("address %q: zoned IPv6 addresses are not supported", s)
	}
	ip = ip.Unmap()
	network := "tcp6"
	if ip.Is4() {
		network = "tcp4"
	}
	return Endpoint{Network: network, IP: ip, Port: int(port)}, nil
}

// maxUnixPath is the room in sockaddr_un.sun_path, less the NUL.
const maxUnixPath = 103

// Addr is a peer address in 20 bytes, cheap enough to keep for every
// connection; the net.Addr is built only when asked for.
type Addr struct {
	ip     [16]byte
	port   uint16
	family uint8
}

const (
	familyNone uint8 = iota
	familyInet4
	familyInet6
	familyUnix
)

// AddrFromAddrPort converts a netip.AddrPort.
func AddrFromAddrPort(ap netip.AddrPort) Addr {
	ip := ap.Addr().Unmap()
	a := Addr{port: ap.Port(), ip: ip.As16()}
	switch {
	case ip.Is4():
		a.family = familyInet4
	case ip.Is6():
		a.family = familyInet6
	}
	return a
}

// UnixAddr is the address of a Unix-socket peer (such peers are unnamed).
func UnixAddr() Addr { return Addr{family: familyUnix} }

// AddrPort returns a as a netip.AddrPort; ok is false for non-IP addresses.
func (a Addr) AddrPort() (ap netip.AddrPort, ok bool) {
	switch a.family {
	case familyInet4:
		return netip.AddrPortFrom(netip.AddrFrom16(a.ip).Unmap(), a.port), true
	case familyInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.ip), a.port), true
	}
	return netip.AddrPort{}, false
}

// NetAddr returns a as a *net.TCPAddr or *net.UnixAddr (nil when unset).
func (a Addr) NetAddr() net.Addr {
	if ap, ok := a.AddrPort(); ok {
		return net.TCPAddrFromAddrPort(ap)
	}
	if a.family == familyUnix {
		return &net.UnixAddr{Net: "unix"}
	}
	return nil
}

func (a Addr) String() string {
	if ap, ok := a.AddrPort(); ok {
		return ap.String()
	}
	if a.family == familyUnix {
		return "unix"
	}
	return ""
}
