package proxyhdr

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// v2 builds a v2 header: verCmd, family, then block (addresses and TLVs),
// with the length field set from block unless length >= 0 overrides it.
func v2(verCmd, fam byte, length int, block ...[]byte) []byte {
	b := append([]byte(nil), sigV2...)
	b = append(b, verCmd, fam, 0, 0)
	for _, p := range block {
		b = append(b, p...)
	}
	if length < 0 {
		length = len(b) - v2Fixed
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(length))
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// tlv encodes one v2 TLV.
func tlv(typ byte, val string) []byte {
	return append(append([]byte{typ}, be16(uint16(len(val)))...), val...)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

var (
	ip4src = []byte{192, 168, 0, 1}
	ip4dst = []byte{10, 0, 0, 1}
	ip6src = netip.MustParseAddr("2001:db8::1").AsSlice()
	ip6dst = netip.MustParseAddr("2001:db8::2").AsSlice()

	// A frame as the application protocol sends it: length 5, "hello".
	frameHello = []byte("\x05\x00\x00\x00hello")
)

type validCase struct {
	name string
	in   []byte
	want Header
}

func validCases() []validCase {
	worstUnknown := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	longestTCP6 := "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65534\r\n"
	tlvs := bytes.Join([][]byte{
		tlv(0x01, "h2"),                                         // ALPN
		tlv(0x02, "example.com"),                                // authority
		tlv(0x05, strings.Repeat("u", 128)),                     // unique-id
		tlv(0x20, "\x07\x00\x00\x00\x00"+"\x21\x00\x07TLSv1.3"), // SSL with version sub-TLV
		tlv(0x04, ""),                                           // NOOP
	}, nil)
	full := make([]byte, MaxLen-v2Fixed-addrLen4)
	return []validCase{
		{"v1 TCP4", []byte("PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n"),
			Header{Source: ap("192.168.0.1:56324"), Dest: ap("10.0.0.1:443")}},
		{"v1 TCP4 port bounds", []byte("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
			Header{Source: ap("0.0.0.0:0"), Dest: ap("255.255.255.255:65535")}},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 ::1 56324 443\r\n"),
			Header{Source: ap("[2001:db8::1]:56324"), Dest: ap("[::1]:443")}},
		{"v1 TCP6 v4-mapped", []byte("PROXY TCP6 ::ffff:1.2.3.4 ::FFFF:5.6.7.8 1 2\r\n"),
			Header{Source: ap("[::ffff:1.2.3.4]:1"), Dest: ap("[::ffff:5.6.7.8]:2")}},
		{"v1 TCP6 longest", []byte(longestTCP6),
			Header{Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dest: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65534")}},
		{"v1 UNKNOWN short", []byte("PROXY UNKNOWN\r\n"), Header{Local: true}},
		{"v1 UNKNOWN worst case 107 bytes", []byte(worstUnknown), Header{Local: true}},
		{"v1 UNKNOWN ignores garbage", []byte("PROXY UNKNOWN x  y\x00\xff\r\n"), Header{Local: true}},

		{"v2 TCP4", v2(0x21, famTCP4, -1, ip4src, ip4dst, be16(56324), be16(443)),
			Header{Source: ap("192.168.0.1:56324"), Dest: ap("10.0.0.1:443")}},
		{"v2 TCP6", v2(0x21, famTCP6, -1, ip6src, ip6dst, be16(56324), be16(443)),
			Header{Source: ap("[2001:db8::1]:56324"), Dest: ap("[2001:db8::2]:443")}},
		{"v2 TCP4 with TLVs", v2(0x21, famTCP4, -1, ip4src, ip4dst, be16(1), be16(2), tlvs),
			Header{Source: ap("192.168.0.1:1"), Dest: ap("10.0.0.1:2")}},
		{"v2 TCP6 with TLVs", v2(0x21, famTCP6, -1, ip6src, ip6dst, be16(1), be16(2), tlvs),
			Header{Source: ap("[2001:db8::1]:1"), Dest: ap("[2001:db8::2]:2")}},
		{"v2 TCP4 exactly MaxLen", v2(0x21, famTCP4, -1, ip4src, ip4dst, be16(1), be16(2), full),
			Header{Source: ap("192.168.0.1:1"), Dest: ap("10.0.0.1:2")}},
		{"v2 LOCAL", v2(0x20, famUnspec, -1), Header{Local: true}},
		{"v2 LOCAL with addresses and TLVs", v2(0x20, famTCP4, -1, ip4src, ip4dst, be16(1), be16(2), tlvs), Header{Local: true}},
		{"v2 LOCAL short block", v2(0x20, famTCP6, -1, ip4src), Header{Local: true}},
		{"v2 LOCAL UDP", v2(0x20, famUDP4, -1), Header{Local: true}},
		{"v2 PROXY UNSPEC", v2(0x21, famUnspec, -1, tlvs), Header{Local: true}},
		{"v2 PROXY UNIX", v2(0x21, famUnixStr, -1, make([]byte, addrLenUnix)), Header{Local: true}},
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			// Fed byte by byte: every strict prefix must ask for more.
			for k := 0; k < len(tc.in); k++ {
				h, n, err := Parse(tc.in[:k])
				if err != ErrIncomplete || n != 0 || h != (Header{}) {
					t.Fatalf("prefix %d/%d: got (%+v, %d, %v), want ErrIncomplete", k, len(tc.in), h, n, err)
				}
			}
			h, n, err := Parse(tc.in)
			if err != nil || n != len(tc.in) || h != tc.want {
				t.Fatalf("got (%+v, %d, %v), want (%+v, %d, nil)", h, n, err, tc.want, len(tc.in))
			}
			// Application bytes after the header are left to the caller,
			// whatever they look like.
			for _, tail := range [][]byte{frameHello, []byte("\r\n"), sigV2, bytes.Repeat([]byte{0xff}, 200)} {
				buf := append(append([]byte(nil), tc.in...), tail...)
				h, n, err := Parse(buf)
				if err != nil || n != len(tc.in) || h != tc.want {
					t.Fatalf("with %q after: got (%+v, %d, %v), want n=%d", tail, h, n, err, len(tc.in))
				}
				if !bytes.Equal(buf[n:], tail) {
					t.Fatalf("remainder %q, want %q", buf[n:], tail)
				}
			}
			checkOracle(t, tc.in)
		})
	}
}

type badCase struct {
	name string
	in   []byte
	want error
	at   int // shortest prefix that already yields want; 0 means len(in)
}

func badCases() []badCase {
	tcp4 := func(src, dst, sport, dport string) []byte {
		return []byte("PROXY TCP4 " + src + " " + dst + " " + sport + " " + dport + "\r\n")
	}
	tcp6 := func(src, dst string) []byte {
		return []byte("PROXY TCP6 " + src + " " + dst + " 1 2\r\n")
	}
	pre4 := len("PROXY TCP4 ")
	pre6 := len("PROXY TCP6 ")
	return []badCase{
		// Not a PROXY header at all: decided on the first byte that differs.
		{"frame header", frameHello, errSignature, 1},
		{"frame of length 'P'", []byte("P\x00\x00\x00" + strings.Repeat("x", 80)), errSignature, 2},
		{"frame of length CR", []byte("\r\x00\x00\x00" + strings.Repeat("x", 13)), errSignature, 2},
		{"HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), errSignature, 1},
		{"TLS ClientHello", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), errSignature, 1},
		{"lowercase v1", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), errSignature, 1},
		{"v1 no space after PROXY", []byte("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), errSignature, 6},
		{"v2 NUL replaced", []byte("\r\n\r\n\x01\r\nQUIT\n\x21\x11\x00\x0c"), errSignature, 5},
		{"v2 signature typo", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 12), errSignature, 11},

		// v2 fixed part.
		{"v2 version 1", v2(0x11, famTCP4, -1, ip4src, ip4dst, be16(1), be16(2)), errV2Version, 13},
		{"v2 version 3", v2(0x31, famTCP4, -1, ip4src, ip4dst, be16(1), be16(2)), errV2Version, 13},
		{"v2 command 2", v2(0x22, famTCP4, -1, ip4src, ip4dst, be16(1), be16(2)), errV2Command, 13},
		{"v2 command F", v2(0x2F, famUnspec, -1), errV2Command, 13},
		{"v2 family 0x13", v2(0x21, 0x13, -1, ip4src, ip4dst, be16(1), be16(2)), errV2Family, 14},
		{"v2 family 0x41", v2(0x21, 0x41, -1, ip4src, ip4dst, be16(1), be16(2)), errV2Family, 14},
		{"v2 family 0x01", v2(0x20, 0x01, -1), errV2Family, 14},
		{"v2 PROXY UDP4", v2(0x21, famUDP4, -1, ip4src, ip4dst, be16(1), be16(2)), errV2Family, 14},
		{"v2 PROXY UDP6", v2(0x21, famUDP6, -1, ip6src, ip6dst, be16(1), be16(2)), errV2Family, 14},
		{"v2 PROXY UNIX DGRAM", v2(0x21, famUnixDgm, -1, make([]byte, addrLenUnix)), errV2Family, 14},
		// Announced length: judged on the fixed part, before the rest arrives.
		{"v2 length 65535", v2(0x21, famTCP4, 0xFFFF, ip4src, ip4dst, be16(1), be16(2)), errV2TooLong, 16},
		{"v2 length MaxLen-15", v2(0x21, famTCP4, MaxLen-v2Fixed+1, ip4src), errV2TooLong, 16},
		{"v2 LOCAL too long", v2(0x20, famUnspec, MaxLen), errV2TooLong, 16},
		{"v2 TCP4 block 11", v2(0x21, famTCP4, -1, ip4src, ip4dst, be16(1), []byte{2}), errV2ShortAddr, 16},
		{"v2 TCP4 block 0", v2(0x21, famTCP4, -1), errV2ShortAddr, 16},
		{"v2 TCP6 block 12", v2(0x21, famTCP6, -1, ip4src, ip4dst, be16(1), be16(2)), errV2ShortAddr, 16},
		{"v2 TCP6 block 35", v2(0x21, famTCP6, -1, ip6src, ip6dst, be16(1), []byte{2}), errV2ShortAddr, 16},
		{"v2 UNIX block 108", v2(0x21, famUnixStr, -1, make([]byte, 108)), errV2ShortAddr, 16},

		// v1 protocol and field structure.
		{"v1 TCP5", []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Proto, 10},
		{"v1 lowercase proto", []byte("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Proto, 7},
		{"v1 empty proto", []byte("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Proto, 7},
		{"v1 TCP truncated", []byte("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n"), errV1Proto, 10},
		{"v1 UNKNOWNX", []byte("PROXY UNKNOWNX\r\n"), errV1Proto, 14},
		{"v1 TCP4 alone", []byte("PROXY TCP4\r\n"), errV1Fields, 11},
		{"v1 missing dport", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), errV1Fields, 29},
		{"v1 missing dst", []byte("PROXY TCP4 1.2.3.4\r\n"), errV1Fields, 19},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), errV1Fields, 31},
		{"v1 double space", []byte("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), errV1Addr, 20},
		{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), errV1Fields, 31},
		{"v1 tab", []byte("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), errV1Proto, 11},
		// Line end.
		{"v1 LF only", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), errV1LineEnd, 31},
		{"v1 CR without LF", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), errV1LineEnd, 32},
		{"v1 UNKNOWN LF only", []byte("PROXY UNKNOWN\n"), errV1LineEnd, 14},
		{"v1 UNKNOWN stray LF", []byte("PROXY UNKNOWN a\nb\r\n"), errV1LineEnd, 16},
		{"v1 UNKNOWN stray CR", []byte("PROXY UNKNOWN a\rb\r\n"), errV1LineEnd, 17},
		{"v1 UNKNOWN no CRLF in 107", []byte("PROXY UNKNOWN " + strings.Repeat("x", 200)), errV1TooLong, 106},
		{"v1 UNKNOWN CRLF at 108", []byte("PROXY UNKNOWN " + strings.Repeat("x", 92) + "\r\n"), errV1TooLong, 106},
		{"v1 UNKNOWN CR at 107", []byte("PROXY UNKNOWN " + strings.Repeat("x", 93) + "\r\n"), errV1TooLong, 106},
		// Addresses.
		{"v1 IPv4 octet 256", tcp4("1.2.3.256", "5.6.7.8", "1", "2"), errV1Addr, pre4 + 9},
		{"v1 IPv4 three parts", tcp4("1.2.3", "5.6.7.8", "1", "2"), errV1Addr, pre4 + 6},
		{"v1 IPv4 five parts", tcp4("1.2.3.4.5", "5.6.7.8", "1", "2"), errV1Addr, pre4 + 8},
		{"v1 IPv4 leading zero", tcp4("01.2.3.4", "5.6.7.8", "1", "2"), errV1Addr, pre4 + 2},
		{"v1 IPv4 empty part", tcp4("1..3.4", "5.6.7.8", "1", "2"), errV1Addr, pre4 + 3},
		{"v1 IPv4 leading dot", tcp4(".1.2.3.4", "5.6.7.8", "1", "2"), errV1Addr, pre4 + 1},
		{"v1 IPv6 in TCP4", tcp4("::1", "5.6.7.8", "1", "2"), errV1Addr, pre4 + 1},
		{"v1 IPv4 in TCP6", tcp6("1.2.3.4", "::1"), errV1Addr, pre6 + 8},
		{"v1 IPv6 zone", tcp6("fe80::1%eth0", "::1"), errV1Addr, pre6 + 8},
		{"v1 IPv6 two ::", tcp6("1::2::3", "::1"), errV1Addr, pre6 + 6},
		{"v1 IPv6 group of 5", tcp6("12345::", "::1"), errV1Addr, pre6 + 5},
		{"v1 IPv6 nine groups", tcp6("1:2:3:4:5:6:7:8:9", "::1"), errV1Addr, pre6 + 18},
		{"v1 IPv6 letter g", tcp6("fg::1", "::1"), errV1Addr, pre6 + 2},
		{"v1 TCP6 45-char addresses", tcp6("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), errV1TooLong, 106},
		{"v1 dst bad", tcp4("1.2.3.4", "5.6.7.999", "1", "2"), errV1Addr, pre4 + 8 + 9},
		// Ports.
		{"v1 port 65536", tcp4("1.2.3.4", "5.6.7.8", "65536", "2"), errV1Port, pre4 + 16 + 5},
		{"v1 port 99999", tcp4("1.2.3.4", "5.6.7.8", "1", "99999"), errV1Port, pre4 + 16 + 2 + 5},
		{"v1 port 6 digits", tcp4("1.2.3.4", "5.6.7.8", "1", "000001"), errV1Port, pre4 + 16 + 2 + 2},
		{"v1 port leading zero", tcp4("1.2.3.4", "5.6.7.8", "080", "2"), errV1Port, pre4 + 16 + 2},
		{"v1 port plus", tcp4("1.2.3.4", "5.6.7.8", "+80", "2"), errV1Port, pre4 + 16 + 1},
		{"v1 port minus", tcp4("1.2.3.4", "5.6.7.8", "1", "-1"), errV1Port, pre4 + 16 + 2 + 1},
		{"v1 port hex", tcp4("1.2.3.4", "5.6.7.8", "0x50", "2"), errV1Port, pre4 + 16 + 2},
		{"v1 port empty", tcp4("1.2.3.4", "5.6.7.8", "", "2"), errV1Port, pre4 + 16 + 1},
		{"v1 port letter", tcp4("1.2.3.4", "5.6.7.8", "8a", "2"), errV1Port, pre4 + 16 + 2},
	}
}

func TestParseMalformed(t *testing.T) {
	for _, tc := range badCases() {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at == 0 {
				at = len(tc.in)
			}
			if at > len(tc.in) {
				t.Fatalf("bad test: at %d > len %d", at, len(tc.in))
			}
			// Undecided exactly until the deciding byte, then the same
			// error for every longer prefix and with more bytes after.
			for k := 0; k <= len(tc.in); k++ {
				want := tc.want
				if k < at {
					want = ErrIncomplete
				}
				h, n, err := Parse(tc.in[:k])
				if err != want || n != 0 || h != (Header{}) {
					t.Fatalf("prefix %d/%d %q: got (%+v, %d, %v), want %v", k, len(tc.in), tc.in[:k], h, n, err, want)
				}
			}
			more := append(append([]byte(nil), tc.in...), "\r\n"+strings.Repeat("z", 200)...)
			if _, _, err := Parse(more); err != tc.want {
				t.Fatalf("with bytes after: %v, want %v", err, tc.want)
			}
			checkOracle(t, tc.in)
		})
	}
}

// TestFrameRejectedAtOnce is the case that matters operationally: a client
// that skips the PROXY header must be dropped on its first read.
func TestFrameRejectedAtOnce(t *testing.T) {
	for k := 1; k <= len(frameHello); k++ {
		if _, _, err := Parse(frameHello[:k]); err == nil || err == ErrIncomplete {
			t.Fatalf("%d bytes of a frame: %v, want a rejection", k, err)
		}
	}
}

func TestEmpty(t *testing.T) {
	if h, n, err := Parse(nil); err != ErrIncomplete || n != 0 || h != (Header{}) {
		t.Fatalf("Parse(nil) = (%+v, %d, %v)", h, n, err)
	}
}

// The parser runs once per connection on the loop goroutine; it should not
// add garbage there.
func TestNoAllocs(t *testing.T) {
	for _, tc := range validCases() {
		allocs := testing.AllocsPerRun(100, func() { _, _, _ = Parse(tc.in) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations", tc.name, allocs)
		}
	}
}

// checkSequence feeds data byte by byte and checks that the results form
// ErrIncomplete*, then one fixed outcome (a header with its n, or an error)
// for every longer prefix: more bytes never change a decision, and the
// decision never waits for bytes past MaxLen.
func checkSequence(t *testing.T, data []byte) {
	t.Helper()
	limit := min(len(data), MaxLen+1)
	decided := -1
	var dh Header
	var dn int
	var derr error
	for k := 0; k <= limit; k++ {
		h, n, err := Parse(data[:k])
		if err != nil && (n != 0 || h != (Header{})) {
			t.Fatalf("prefix %d: error %v with n=%d h=%+v", k, err, n, h)
		}
		if err == ErrIncomplete {
			if decided >= 0 {
				t.Fatalf("prefix %d: ErrIncomplete after a decision at %d (%v)", k, decided, derr)
			}
			if k >= MaxLen {
				t.Fatalf("prefix %d: still undecided at MaxLen", k)
			}
			continue
		}
		if decided < 0 {
			decided, dh, dn, derr = k, h, n, err
			if err == nil {
				if n != k {
					t.Fatalf("success first seen at %d bytes with n=%d", k, n)
				}
				if n <= 0 || n > MaxLen {
					t.Fatalf("n=%d out of (0, MaxLen]", n)
				}
				if !h.Local && (!h.Source.IsValid() || !h.Dest.IsValid()) {
					t.Fatalf("non-local header with invalid addresses: %+v", h)
				}
				if h.Local && h != (Header{Local: true}) {
					t.Fatalf("local header with addresses: %+v", h)
				}
			}
			continue
		}
		if h != dh || n != dn || err != derr {
			t.Fatalf("prefix %d: (%+v, %d, %v) differs from decision at %d: (%+v, %d, %v)", k, h, n, err, decided, dh, dn, derr)
		}
	}
	// Longer than MaxLen+1: the full buffer must agree too.
	h, n, err := Parse(data)
	if decided >= 0 && (h != dh || n != dn || err != derr) {
		t.Fatalf("full buffer (%d bytes) differs from decision at %d", len(data), decided)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range validCases() {
		f.Add(tc.in)
		f.Add(append(append([]byte(nil), tc.in...), frameHello...))
	}
	for _, tc := range badCases() {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := Parse(data)
		switch {
		case err == nil:
			if n <= 0 || n > len(data) || n > MaxLen {
				t.Fatalf("n=%d for %d bytes", n, len(data))
			}
			if h2, n2, err2 := Parse(data[:n]); h2 != h || n2 != n || err2 != nil {
				t.Fatalf("Parse(buf[:n]) = (%+v, %d, %v), want (%+v, %d, nil)", h2, n2, err2, h, n)
			}
		case n != 0 || h != (Header{}):
			t.Fatalf("error %v with n=%d h=%+v", err, n, h)
		}
		checkSequence(t, data)
		checkOracle(t, data)
		checkAddrParsers(t, data)
	})
}

// checkAddrParsers holds the v1 field parsers to netip and strconv, and
// checks that each viable* accepts every prefix of what it accepts, so a
// valid field is never rejected before it is complete.
func checkAddrParsers(t *testing.T, data []byte) {
	t.Helper()
	if len(data) > 64 {
		return
	}
	na, nerr := netip.ParseAddr(string(data))
	want4 := nerr == nil && na.Is4()
	want6 := nerr == nil && na.Is6() && na.Zone() == ""
	if a, ok := parseIPv4(data); ok != want4 || (ok && a != na) {
		t.Fatalf("parseIPv4(%q) = %v, %v; netip: %v, %v", data, a, ok, na, nerr)
	}
	if a, ok := parseIPv6(data); ok != want6 || (ok && a != na) {
		t.Fatalf("parseIPv6(%q) = %v, %v; netip: %v, %v", data, a, ok, na, nerr)
	}
	if want4 && !viableIPv4(data) {
		t.Fatalf("viableIPv4 rejects valid %q", data)
	}
	if want6 && !viableIPv6(data) {
		t.Fatalf("viableIPv6 rejects valid %q", data)
	}
	pv, perr := strconv.ParseUint(string(data), 10, 16)
	wantPort := perr == nil && (len(data) == 1 || data[0] != '0')
	if got := len(data) > 0 && viablePort(data); got != wantPort || (got && uint64(parsePort(data)) != pv) {
		t.Fatalf("port %q: viable %v, want %v (%v)", data, got, wantPort, perr)
	}
	for name, viable := range map[string]func([]byte) bool{
		"proto": viableProto, "port": viablePort, "IPv4": viableIPv4, "IPv6": viableIPv6,
	} {
		if !viable(data) {
			continue
		}
		for k := range data {
			if !viable(data[:k]) {
				t.Fatalf("viable%s accepts %q but not its prefix %q", name, data, data[:k])
			}
		}
	}
}

func TestAddrParsers(t *testing.T) {
	for _, s := range []string{
		"", "0.0.0.0", "1.2.3.4", "255.255.255.255", "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1..2.3",
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::",
		"::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", ":1::", "1:", ":1", "12345::", "0000::FFFF",
		"::ffff:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::01.2.3.4",
		"::1.2.3", "1.2.3.4::", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", "fe80::1%eth0", "g::1",
		"2001:db8::1", "2001:DB8:0:0:8:800:200C:417A", "::ffff:1.2.3.4:5", "1:2:3:4:5:6::1.2.3.4",
		"0", "80", "080", "65535", "65536", "+1", "-1", "1e3",
	} {
		checkAddrParsers(t, []byte(s))
	}
}

func TestTLVs(t *testing.T) {
	tlvs := []byte{0x02, 0x00, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0x05, 0x00, 0x02, 'i', 'd'}
	addrs := []byte{192, 0, 2, 7, 198, 51, 100, 1, 0x4e, 0x20, 0x01, 0xbb}
	hdr := v2(0x21, famTCP4, -1, addrs, tlvs)
	_, n, err := Parse(hdr)
	if err != nil || n != len(hdr) {
		t.Fatalf("Parse: %d, %v", n, err)
	}
	var got []string
	if !EachTLV(TLVArea(hdr[:n]), func(typ byte, v []byte) { got = append(got, fmt.Sprintf("%d=%s", typ, v)) }) {
		t.Fatal("a well-formed TLV area reported malformed")
	}
	if want := []string{"2=example.com", "5=id"}; !slices.Equal(got, want) {
		t.Fatalf("TLVs %q, want %q", got, want)
	}
	if EachTLV([]byte{0x02, 0x00, 0x09, 'x'}, func(byte, []byte) {}) {
		t.Fatal("a TLV running past the end reported well formed")
	}
	if a := TLVArea(v2(0x20, famTCP4, -1, addrs, tlvs)); len(a) != 0 {
		t.Fatalf("a LOCAL header has a TLV area of %d bytes", len(a))
	}
}
