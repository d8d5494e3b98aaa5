package frameloop_test

// docs/behaviour.md §1.1: every framing — any width, either byte order, a
// prefix, an adjustment, a varint — is decoded however its frames are cut
// into reads, the echo answers each frame with its identical bytes, and a
// malformed header answers the frames before it, then closes with a reason
// that says which: oversize, or bad_frame.

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// wireFormat is a framing, described twice: as the daemon's --framing
// spelling, and by the fields of an encoder written here, independently of
// the library's.
type wireFormat struct {
	spec      string
	offset    int
	width     int // 1, 2, 3, 4 or 8; 0 for a varint
	be        bool
	adjust    int
	varintMax int
}

var wireFormats = []wireFormat{
	{spec: "u32le", width: 4},
	{spec: "u32be", width: 4, be: true},
	{spec: "u16be", width: 2, be: true},
	{spec: "u16le", width: 2},
	{spec: "u8", width: 1},
	{spec: "u24be", width: 3, be: true},
	{spec: "u24le", width: 3},
	{spec: "u64be", width: 8, be: true},
	{spec: "varint", varintMax: 5},
	{spec: "mqtt", offset: 1, varintMax: 4},
	{spec: "grpc", offset: 1, width: 4, be: true},
	{spec: "mysql", width: 3, adjust: 1},
	// A length that counts itself, PostgreSQL's message (a type byte,
	// then a length that includes its own 4 bytes), a short varint after
	// a long prefix, and a little-endian 8-byte length after a prefix.
	{spec: "length=2,order=be,adjust=-2", width: 2, be: true, adjust: -2},
	{spec: "offset=1,length=4,order=be,adjust=-4", offset: 1, width: 4, be: true, adjust: -4},
	{spec: "offset=3,length=varint,varint-max=3", offset: 3, varintMax: 3},
	{spec: "offset=2,length=8,order=le", offset: 2, width: 8},
}

// maxBody is the MaxMessage of these tests: small enough for u8.
const formatMaxBody = 200

// header encodes the prefix and the length field announcing value.
func (w wireFormat) header(prefix []byte, value uint64) []byte {
	b := append([]byte{}, prefix...)
	if w.width == 0 {
		for value >= 0x80 {
			b = append(b, byte(value)|0x80)
			value >>= 7
		}
		return append(b, byte(value))
	}
	for i := range w.width {
		shift := 8 * i
		if w.be {
			shift = 8 * (w.width - 1 - i)
		}
		b = append(b, byte(value>>shift))
	}
	return b
}

// frame encodes a frame carrying body, with a prefix drawn from seed.
func (w wireFormat) frame(body []byte, seed uint64) []byte {
	prefix := testkit.Pattern(w.offset, seed)
	return append(w.header(prefix, uint64(len(body)-w.adjust)), body...)
}

func (w wireFormat) config(cfg frameloop.Config, t *testing.T) frameloop.Config {
	f, err := frameloop.ParseFraming(w.spec)
	if err != nil {
		t.Fatalf("ParseFraming(%q): %v", w.spec, err)
	}
	cfg.Framing = f
	cfg.MaxMessage = formatMaxBody
	return cfg
}

func forEachFormat(t *testing.T, fn func(t *testing.T, w wireFormat, cfg frameloop.Config)) {
	for _, w := range wireFormats {
		t.Run(w.spec, func(t *testing.T) {
			t.Parallel()
			forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
				fn(t, w, w.config(cfg, t))
			})
		})
	}
}

// expectBytes reads exactly len(want) bytes and compares them.
func expectBytes(c io.Reader, want []byte) error {
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("reading %d bytes of echoes: %w", len(want), err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		return fmt.Errorf("the echoes differ from the frames sent at byte %d of %d: got %s, want %s",
			i, len(want), testkit.Preview(got[i:]), testkit.Preview(want[i:]))
	}
	return nil
}

func TestFormatsEchoTheIdenticalBytes(t *testing.T) {
	// Sizes around the varint's one- and two-byte boundary, the empty
	// body, and the largest allowed.
	sizes := []int{0, 1, 5, 127, 128, formatMaxBody}
	forEachFormat(t, func(t *testing.T, w wireFormat, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		c := testkit.DialTCP(t, ts.addr, ioTimeout)
		c.SetDeadline(time.Now().Add(3 * ioTimeout))
		var stream []byte
		for i, n := range sizes {
			// A positive adjustment makes the smallest bodies inexpressible
			// (MySQL's body always holds its sequence byte).
			n = max(n, w.adjust)
			stream = append(stream, w.frame(testkit.Pattern(n, uint64(i)), uint64(i))...)
		}
		// Many frames in one write.
		if _, err := c.Write(stream); err != nil {
			t.Fatal(err)
		}
		if err := expectBytes(c, stream); err != nil {
			t.Fatalf("in one write: %v", err)
		}
		// Every byte in its own write, each most likely read on its own:
		// splits inside the prefix, inside the length field (inside a
		// varint) and inside the body. The largest frame is left out, to
		// keep it quick.
		small := stream[:len(stream)-len(w.frame(make([]byte, formatMaxBody), 0))]
		for i := range small {
			if _, err := c.Write(small[i : i+1]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Microsecond)
		}
		if err := expectBytes(c, small); err != nil {
			t.Fatalf("a byte at a time: %v", err)
		}
	})
}

func TestFormatsRefuseMalformedHeaders(t *testing.T) {
	type badHeader struct {
		name   string
		header []byte
		reason frameloop.CloseReason
	}
	forEachFormat(t, func(t *testing.T, w wireFormat, cfg frameloop.Config) {
		prefix := testkit.Pattern(w.offset, 9)
		cases := []badHeader{
			{"one byte over the maximum", w.header(prefix, uint64(formatMaxBody+1-w.adjust)), frameloop.ReasonOversize},
		}
		if w.width == 0 {
			long := append([]byte{}, prefix...)
			for range w.varintMax {
				long = append(long, 0xff)
			}
			cases = append(cases, badHeader{"a varint longer than allowed", long, frameloop.ReasonBadFrame})
		}
		if w.adjust < 0 {
			cases = append(cases, badHeader{"a size the adjustment makes negative", w.header(prefix, uint64(-w.adjust-1)), frameloop.ReasonBadFrame})
		}
		for _, bad := range cases {
			rec := newRecorder(t)
			ts := startServer(t, rec, cfg)
			c := testkit.DialTCP(t, ts.addr, ioTimeout)
			good := w.frame([]byte("before"), 1)
			if err := testkit.WriteAll(c, append(append([]byte{}, good...), bad.header...), ioTimeout); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(ioTimeout))
			if err := expectBytes(c, good); err != nil {
				t.Fatalf("%s: the frame before it: %v", bad.name, err)
			}
			testkit.ExpectClosed(t, c, ioTimeout)
			ts.waitStats(t, ioTimeout, bad.name+": closed for "+bad.reason.String(), func(st frameloop.Stats) bool {
				return st.ClosedBy(bad.reason) == 1
			})
		}
	})
}
