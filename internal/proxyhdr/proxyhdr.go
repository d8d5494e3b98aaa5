// Package proxyhdr parses the HAProxy PROXY protocol header (v1 text, v2
// binary) that a load balancer puts in front of a connection's own bytes.
//
// It is written for an event loop rather than a blocking reader: the loop
// calls Parse with everything received so far each time more bytes arrive,
// and Parse either finishes, asks for more, or rejects. Rejection happens at
// the first byte that rules out a valid header, so a client speaking the
// frame protocol directly (or anything else) is dropped on its first read
// instead of lingering until the idle timeout.
//
// This is a small parser of its own rather than a wrapper around
// github.com/pires/go-proxyproto. That library reads from a bufio.Reader
// and blocks for missing bytes, so the loop would first have to work out
// on its own whether a header is complete — which is most of the parsing —
// and then pay for a reader, a Header and net.Addr values per connection;
// the server would link a dependency (whose go.mod brings golang.org/x/net
// into the module graph) to save about 300 lines. Its policy also differs
// where this package needs its own (PROXY over AF_UNSPEC, datagram
// families, the length cap). go-proxyproto is used in tests only, as a
// differential oracle for the fuzzer.
package proxyhdr

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// MaxLen is the longest header accepted, in bytes, and so the most the loop
// has to hold for a connection before its first frame.
//
// A v1 line is at most 107 bytes by the spec. HAProxy's send-proxy-v2
// without TLV options sends 28 (IPv4) or 52 (IPv6) bytes; its TLVs (ALPN,
// authority, unique-id of at most 128 bytes, the SSL group, CRC32C, netns)
// add a few hundred bytes, and even a DER client certificate (1–2 KiB),
// which some proxies forward, fits. 4096 is a buffer class of
// internal/bufpool and close to go-proxyproto's default (which caps the
// part after the 16 fixed bytes at 4096), and it keeps small what a peer can
// make the server hold for an unfinished header.
const MaxLen = 4096

// ErrIncomplete means the bytes so far are a valid start of a header; the
// caller waits for more (its idle deadline bounds the wait) and calls again.
var ErrIncomplete = errors.New("proxyhdr: incomplete PROXY header")

// The loop only needs "wait" or "reject", so the rejection reasons stay
// unexported; their messages are for logs.
var (
	errSignature   = errors.New("proxyhdr: no PROXY protocol signature")
	errV1TooLong   = errors.New("proxyhdr: v1 header without CRLF within 107 bytes")
	errV1Proto     = errors.New("proxyhdr: v1 protocol is not TCP4, TCP6 or UNKNOWN")
	errV1Addr      = errors.New("proxyhdr: v1 address invalid for its protocol")
	errV1Port      = errors.New("proxyhdr: v1 port invalid")
	errV1Fields    = errors.New("proxyhdr: v1 header has the wrong number of fields")
	errV1LineEnd   = errors.New("proxyhdr: v1 header has a stray CR or LF")
	errV2Version   = errors.New("proxyhdr: v2 header with unsupported version")
	errV2Command   = errors.New("proxyhdr: v2 header with unsupported command")
	errV2Family    = errors.New("proxyhdr: v2 header with unsupported address family or transport")
	errV2TooLong   = errors.New("proxyhdr: v2 header longer than MaxLen")
	errV2ShortAddr = errors.New("proxyhdr: v2 address block shorter than its family needs")
)

// Header is what the proxy says about the client connection.
type Header struct {
	// Local: the proxy opened the connection itself (v2 LOCAL, e.g. a health
	// check) or could not tell the addresses (v1 UNKNOWN, v2 UNSPEC/UNIX);
	// the caller keeps using the socket's own peer address.
	Local  bool
	Source netip.AddrPort // valid when !Local
	Dest   netip.AddrPort // valid when !Local
}

// TLVArea returns the type-length-value area of a complete v2 PROXY
// header (hdr is the n bytes Parse accepted): what follows the TCP4 or
// TCP6 addresses. It is empty for every other header.
func TLVArea(hdr []byte) []byte {
	if len(hdr) < v2Fixed || hdr[0] != sigV2[0] || hdr[12]&0x0F != cmdProxy {
		return nil
	}
	switch hdr[13] {
	case famTCP4:
		return hdr[min(v2Fixed+addrLen4, len(hdr)):]
	case famTCP6:
		return hdr[min(v2Fixed+addrLen6, len(hdr)):]
	}
	return nil
}

// EachTLV calls fn for each type-length-value field of a TLV area (each:
// a type byte, a 2-byte big-endian length, the value) and reports whether
// the area was well formed; it stops at the first field that runs past
// the end.
func EachTLV(area []byte, fn func(typ byte, value []byte)) bool {
	for len(area) > 0 {
		if len(area) < 3 {
			return false
		}
		n := 3 + int(binary.BigEndian.Uint16(area[1:3]))
		if n > len(area) {
			return false
		}
		fn(area[0], area[3:n])
		area = area[n:]
	}
	return true
}

const (
	v1MaxLen = 107 // "PROXY UNKNOWN " + 2×39-char IPv6 + 2 ports + spaces + CRLF
	v2Fixed  = 16  // signature, version/command, family/transport, length
)

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Parse examines buf, the bytes received so far on a connection, for a PROXY header at its start.
// Complete header: returns the header and n = its length in bytes (the caller drops buf[:n]; bytes after it are the application's).
// Not enough bytes yet to decide: returns n == 0 and err == ErrIncomplete.
// Anything else (wrong signature, malformed, unsupported version/command, longer than MaxLen): a non-nil error other than ErrIncomplete.
//
// Every decision depends only on the bytes up to the position where it is
// taken, scanning left to right, so a rejection is final: more bytes never
// turn it into an acceptance or a different error.
func Parse(buf []byte) (h Header, n int, err error) {
	if len(buf) == 0 {
		return Header{}, 0, ErrIncomplete
	}
	// The two signatures differ in their first byte, which is enough to
	// pick one; anything else is rejected on the first byte.
	switch buf[0] {
	case sigV1[0]:
		h, n, err = parseV1(buf)
	case sigV2[0]:
		h, n, err = parseV2(buf)
	default:
		err = errSignature
	}
	if err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

// matchSig checks the part of sig that has arrived.
func matchSig(buf, sig []byte) error {
	for i := range sig {
		if i >= len(buf) {
			return ErrIncomplete
		}
		if buf[i] != sig[i] {
			return errSignature
		}
	}
	return nil
}

// --- v1 -------------------------------------------------------------------

// The delimiters that end a v1 field; neither is ever part of a valid field,
// so a field scanner can stop at either and let the caller judge which one
// it got.
func isV1Delim(c byte) bool { return c == ' ' || c == '\r' }

// v1Byte returns the byte at j of a line that has not reached its CR yet.
// The last two places of a 107-byte line can only hold its CRLF, so a line
// that has anything else there is rejected as too long right away.
func v1Byte(buf []byte, j int) (byte, error) {
	if j >= v1MaxLen-1 {
		return 0, errV1TooLong
	}
	if j >= len(buf) {
		return 0, ErrIncomplete
	}
	c := buf[j]
	if j == v1MaxLen-2 && c != '\r' {
		return 0, errV1TooLong
	}
	if c == '\n' {
		return 0, errV1LineEnd
	}
	return c, nil
}

// v1Field scans the field starting at i. It stops at the first delimiter
// (returning its index), or rejects at the first byte after which no valid
// field can follow (viable must hold for every prefix of every valid field,
// and stay false once false).
func v1Field(buf []byte, i int, viable func([]byte) bool, bad error) (end int, err error) {
	for j := i; ; j++ {
		c, err := v1Byte(buf, j)
		if err != nil {
			return 0, err
		}
		if isV1Delim(c) {
			return j, nil
		}
		if !viable(buf[i : j+1]) {
			return 0, bad
		}
	}
}

// v1LF expects the LF of the line's CRLF at i (the CR is at i-1, which
// v1Byte kept within the limit).
func v1LF(buf []byte, i int) (n int, err error) {
	switch {
	case i >= v1MaxLen:
		return 0, errV1TooLong
	case i >= len(buf):
		return 0, ErrIncomplete
	case buf[i] != '\n':
		return 0, errV1LineEnd
	}
	return i + 1, nil
}

func parseV1(buf []byte) (Header, int, error) {
	if err := matchSig(buf, sigV1); err != nil {
		return Header{}, 0, err
	}
	i := len(sigV1)
	end, err := v1Field(buf, i, viableProto, errV1Proto)
	if err != nil {
		return Header{}, 0, err
	}
	var v4 bool
	switch string(buf[i:end]) {
	case "UNKNOWN":
		return parseV1Unknown(buf, end)
	case "TCP4":
		v4 = true
	case "TCP6":
	default:
		return Header{}, 0, errV1Proto
	}
	if buf[end] != ' ' {
		return Header{}, 0, errV1Fields
	}
	viableAddr := viableIPv6
	if v4 {
		viableAddr = viableIPv4
	}

	var addrs [2]netip.Addr
	for k := range addrs {
		i = end + 1
		end, err = v1Field(buf, i, viableAddr, errV1Addr)
		if err != nil {
			return Header{}, 0, err
		}
		var ok bool
		if v4 {
			addrs[k], ok = parseIPv4(buf[i:end])
		} else {
			addrs[k], ok = parseIPv6(buf[i:end])
		}
		if !ok {
			return Header{}, 0, errV1Addr
		}
		if buf[end] != ' ' {
			return Header{}, 0, errV1Fields
		}
	}
	var ports [2]uint16
	for k := range ports {
		i = end + 1
		end, err = v1Field(buf, i, viablePort, errV1Port)
		if err != nil {
			return Header{}, 0, err
		}
		if end == i {
			return Header{}, 0, errV1Port
		}
		ports[k] = parsePort(buf[i:end])
		// Source port is followed by a space, destination port by CRLF.
		if want := " \r"[k]; buf[end] != want {
			return Header{}, 0, errV1Fields
		}
	}
	n, err := v1LF(buf, end+1)
	if err != nil {
		return Header{}, 0, err
	}
	return Header{
		Source: netip.AddrPortFrom(addrs[0], ports[0]),
		Dest:   netip.AddrPortFrom(addrs[1], ports[1]),
	}, n, nil
}

// parseV1Unknown finishes "PROXY UNKNOWN": the spec tells the receiver to
// ignore whatever follows up to the CRLF, so only the line structure is
// checked.
func parseV1Unknown(buf []byte, end int) (Header, int, error) {
	i := end
	if buf[i] == ' ' {
		for i++; ; i++ {
			c, err := v1Byte(buf, i)
			if err != nil {
				return Header{}, 0, err
			}
			if c == '\r' {
				break
			}
		}
	}
	n, err := v1LF(buf, i+1)
	if err != nil {
		return Header{}, 0, err
	}
	return Header{Local: true}, n, nil
}

func viableProto(t []byte) bool {
	for _, p := range [...]string{"TCP4", "TCP6", "UNKNOWN"} {
		if len(t) <= len(p) && string(t) == p[:len(t)] {
			return true
		}
	}
	return false
}

// viablePort is exact: 1–5 decimal digits, no leading zero, at most 65535.
func viablePort(t []byte) bool {
	if len(t) > 5 || (len(t) > 1 && t[0] == '0') {
		return false
	}
	v := 0
	for _, c := range t {
		if c < '0' || c > '9' {
			return false
		}
		v = v*10 + int(c-'0')
	}
	return v <= 0xFFFF
}

// parsePort is called on a non-empty token that viablePort accepted.
func parsePort(t []byte) uint16 {
	v := 0
	for _, c := range t {
		v = v*10 + int(c-'0')
	}
	return uint16(v)
}

// viableIPv4 is exact: dotted quad as netip.ParseAddr takes it (no leading
// zeros, each part 0–255), allowing only for the part still arriving.
func viableIPv4(t []byte) bool {
	dots, digits, v := 0, 0, 0
	for k, c := range t {
		switch {
		case c == '.':
			if digits == 0 || dots == 3 {
				return false
			}
			dots, digits, v = dots+1, 0, 0
		case c >= '0' && c <= '9':
			if digits == 1 && t[k-1] == '0' {
				return false // leading zero
			}
			digits++
			v = v*10 + int(c-'0')
			if v > 255 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func parseIPv4(t []byte) (netip.Addr, bool) {
	if !viableIPv4(t) {
		return netip.Addr{}, false
	}
	var a [4]byte
	k, digits := 0, 0
	for _, c := range t {
		if c == '.' {
			k, digits = k+1, 0
			continue
		}
		a[k] = a[k]*10 + c - '0' // viableIPv4 bounds k ≤ 3 and the value ≤ 255
		digits++
	}
	if k != 3 || digits == 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

// maxIPv6Text is the longest IPv6 literal netip accepts without a zone:
// eight 4-digit groups, or six and an embedded dotted quad (45).
const maxIPv6Text = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")

// viableIPv6 checks necessary conditions only (alphabet, length, group size,
// at most one "::", nothing but a dotted quad after a dot); parseIPv6
// judges the finished field. A bad field that slips through is rejected at its
// delimiter, at most maxIPv6Text bytes later.
func viableIPv6(t []byte) bool {
	if len(t) > maxIPv6Text {
		return false
	}
	group, dot, double := 0, false, false
	for k, c := range t {
		switch {
		case c == ':':
			if dot {
				return false
			}
			if k > 0 && t[k-1] == ':' {
				if double {
					return false // a second "::", or ":::"
				}
				double = true
			}
			group = 0
			continue
		case c == '.':
			dot = true
			group = 0
			continue
		case c >= '0' && c <= '9':
		case (c|0x20) >= 'a' && (c|0x20) <= 'f':
			if dot {
				return false
			}
		default:
			return false
		}
		if group++; group > 4 {
			return false
		}
	}
	return true
}

// parseIPv6 accepts exactly what netip.ParseAddr accepts as an IPv6
// address without a zone (the fuzz test holds it to that), but from bytes,
// so that the header path does not allocate a string per address. A plain
// IPv4 literal is not one: in a TCP6 line the spec has the family dictate
// the format.
func parseIPv6(t []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // index in ip where "::" stands
	s := t
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, 0
		for ; off < len(s); off++ {
			v := hexVal(s[off])
			if v < 0 {
				break
			}
			if off > 3 {
				return netip.Addr{}, false
			}
			acc = acc<<4 | v
		}
		if off == 0 {
			return netip.Addr{}, false
		}
		if off < len(s) && s[off] == '.' {
			// A dotted quad ends the address and stands for two groups.
			if (ellipsis < 0 && i != 12) || i+4 > 16 {
				return netip.Addr{}, false
			}
			a4, ok := parseIPv4(s)
			if !ok {
				return netip.Addr{}, false
			}
			b := a4.As4()
			copy(ip[i:i+4], b[:])
			s = nil
			i += 4
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		// Move the groups after "::" to the end and zero the gap.
		n := 16 - i
		for j := i - 1; j >= ellipsis; j-- {
			ip[j+n] = ip[j]
		}
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// --- v2 -------------------------------------------------------------------

const (
	cmdLocal = 0x0
	cmdProxy = 0x1

	famUnspec  = 0x00
	famTCP4    = 0x11
	famUDP4    = 0x12
	famTCP6    = 0x21
	famUDP6    = 0x22
	famUnixStr = 0x31
	famUnixDgm = 0x32

	addrLen4    = 12  // 2×4 address + 2×2 port
	addrLen6    = 36  // 2×16 address + 2×2 port
	addrLenUnix = 216 // 2×108 path
)

func parseV2(buf []byte) (Header, int, error) {
	if err := matchSig(buf, sigV2); err != nil {
		return Header{}, 0, err
	}
	if len(buf) < 13 {
		return Header{}, 0, ErrIncomplete
	}
	if buf[12]>>4 != 2 {
		return Header{}, 0, errV2Version
	}
	cmd := buf[12] & 0x0F
	if cmd != cmdLocal && cmd != cmdProxy {
		return Header{}, 0, errV2Command
	}
	if len(buf) < 14 {
		return Header{}, 0, ErrIncomplete
	}
	fam := buf[13]
	need := 0 // address block a PROXY header of this family must carry
	switch fam {
	case famUnspec:
	case famTCP4:
		need = addrLen4
	case famTCP6:
		need = addrLen6
	case famUnixStr:
		need = addrLenUnix
	case famUDP4, famUDP6, famUnixDgm:
		// Defined by the spec, but a datagram flow cannot be what arrives
		// on this TCP connection; LOCAL ignores the family anyway.
		if cmd == cmdProxy {
			return Header{}, 0, errV2Family
		}
	default:
		// The spec says receivers must reject undefined values.
		return Header{}, 0, errV2Family
	}
	if len(buf) < v2Fixed {
		return Header{}, 0, ErrIncomplete
	}
	total := v2Fixed + int(binary.BigEndian.Uint16(buf[14:16]))
	if total > MaxLen {
		return Header{}, 0, errV2TooLong
	}
	// LOCAL carries no meaningful addresses and the spec tells receivers to
	// skip the block whatever its size, so only PROXY is held to its family.
	if cmd == cmdProxy && total-v2Fixed < need {
		return Header{}, 0, errV2ShortAddr
	}
	if len(buf) < total {
		return Header{}, 0, ErrIncomplete
	}
	// Anything in the block past the addresses is TLVs (TLVArea, EachTLV).
	if cmd == cmdLocal {
		return Header{Local: true}, total, nil
	}
	b := buf[v2Fixed:total] // at least need bytes, checked above
	switch fam {
	case famTCP4:
		return Header{
			Source: netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[0:4])), binary.BigEndian.Uint16(b[8:10])),
			Dest:   netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[10:12])),
		}, total, nil
	case famTCP6:
		return Header{
			Source: netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[0:16])), binary.BigEndian.Uint16(b[32:34])),
			Dest:   netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[16:32])), binary.BigEndian.Uint16(b[34:36])),
		}, total, nil
	}
	// PROXY over AF_UNSPEC (the proxy does not know the addresses) or
	// AF_UNIX (a path is no use as a client address; the datagram families
	// were rejected above): treated as LOCAL, so the caller keeps the
	// socket's own peer address rather than dropping the connection.
	// HAProxy accepts both; go-proxyproto rejects PROXY over AF_UNSPEC.
	return Header{Local: true}, total, nil
}
