package framing_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/frameloop/frameloop/internal/framing"
)

// formats returns every preset and some custom specs worth a table row.
func formats(t testing.TB) map[string]framing.Spec {
	t.Helper()
	m := map[string]framing.Spec{}
	for _, name := range framing.Presets() {
		s, err := framing.ParseSpec(name)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = s
	}
	for _, spec := range []string{
		"offset=1,length=4,order=be,adjust=-4", // PostgreSQL
		"offset=3,length=2,order=le,adjust=7",
		"length=8,order=le,adjust=-8",
		"length=8,order=be,adjust=1",
		"length=varint,varint-max=10",
		"length=varint,varint-max=1,offset=2",
		"length=varint,varint-max=2,adjust=-3",
		"length=1,adjust=-255",
		"length=4,order=le,offset=16,adjust=1000",
	} {
		s, err := framing.ParseSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		m[spec] = s
	}
	return m
}

func mustNew(t testing.TB, s framing.Spec, max int) *framing.Format {
	t.Helper()
	f, err := framing.New(s, max)
	if err != nil {
		t.Fatalf("New(%v, %d): %v", s, max, err)
	}
	return f
}

// header builds a header by hand, independently of the package's encoder:
// prefix bytes 0xA0, 0xA1, ..., then v in the spec's field, byte at a time.
func header(s framing.Spec, v uint64) []byte {
	var b []byte
	for i := 0; i < s.Offset; i++ {
		b = append(b, byte(0xA0+i))
	}
	switch {
	case s.Length == framing.LengthVarint:
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		return append(b, byte(v))
	case s.BigEndian:
		for i := s.Length - 1; i >= 0; i-- {
			b = append(b, byte(v>>(8*i)))
		}
	default:
		for i := 0; i < s.Length; i++ {
			b = append(b, byte(v>>(8*i)))
		}
	}
	return b
}

// fieldMax is the largest value the spec's length field holds.
func fieldMax(s framing.Spec) uint64 {
	bits := 8 * s.Length
	if s.Length == framing.LengthVarint {
		bits = 7 * s.VarintMax
	}
	if bits >= 64 {
		return math.MaxUint64
	}
	return 1<<bits - 1
}

// bodyRange returns the smallest and largest body a frame of s can carry.
func bodyRange(s framing.Spec, max int) (lo, hi int64) {
	lo = max64(0, s.Adjust)
	hi = int64(max)
	if m := fieldMax(s); m < uint64(hi-s.Adjust) {
		hi = int64(m) + s.Adjust
	}
	return lo, hi
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

type result struct {
	n, h, need int
	err        error
}

func (r result) String() string {
	return fmt.Sprintf("{n:%d h:%d need:%d err:%v}", r.n, r.h, r.need, r.err)
}

func next(f *framing.Format, buf []byte) result {
	n, h, need, err := f.Next(buf)
	return result{n, h, need, err}
}

func TestNextBytes(t *testing.T) {
	ff := func(b ...byte) []byte { return b }
	rep := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	const big = framing.MaxBody
	tests := []struct {
		spec string
		max  int
		buf  []byte
		want result
	}{
		{"u32le", 10, ff(5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 9), result{9, 4, 9, nil}},
		{"u32le", 10, ff(0, 1, 0, 0), result{0, 0, 0, framing.ErrTooLarge}},
		{"u32le", big, ff(0, 1, 0, 0), result{0, 0, 260, nil}},
		{"u32le", big, ff(0xff, 0xff, 0xff, 0xff), result{0, 0, 0, framing.ErrTooLarge}},
		{"u32le", big, ff(0, 0, 0, 0x40), result{0, 0, 4 + 1<<30, nil}},
		{"u32le", big, ff(1, 0, 0, 0x40), result{0, 0, 0, framing.ErrTooLarge}},
		{"u32be", 10, ff(0, 0, 0, 2, 'h', 'i'), result{6, 4, 6, nil}},
		{"u16le", big, ff(1, 2), result{0, 0, 2 + 0x0201, nil}},
		{"u16be", big, ff(1, 2), result{0, 0, 2 + 0x0102, nil}},
		{"u24le", big, ff(1, 2, 3), result{0, 0, 3 + 0x030201, nil}},
		{"u24be", big, ff(1, 2, 3), result{0, 0, 3 + 0x010203, nil}},
		{"u8", 10, ff(0), result{1, 1, 1, nil}},
		{"u8", big, ff(0xff), result{0, 0, 256, nil}},
		// 8-byte values an int32 conversion would truncate to small sizes.
		{"u64be", big, ff(0, 0, 0, 1, 0, 0, 0, 0), result{0, 0, 0, framing.ErrTooLarge}},
		{"u64be", big, ff(0x80, 0, 0, 0, 0, 0, 0, 3), result{0, 0, 0, framing.ErrTooLarge}},
		{"u64be", big, rep(0xff, 8), result{0, 0, 0, framing.ErrTooLarge}},
		{"u64be", 3, ff(0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3), result{11, 8, 11, nil}},
		{"length=8,order=le", big, ff(3, 0, 0, 0, 1, 0, 0, 0), result{0, 0, 0, framing.ErrTooLarge}},
		// 2^64-1 + 1 wraps to 0 in uint64 arithmetic.
		{"length=8,order=be,adjust=1", big, rep(0xff, 8), result{0, 0, 0, framing.ErrTooLarge}},
		// 3 - 4 wraps to 2^64-1 in uint64 arithmetic, and to a small
		// negative int that a careless len(buf) < n check would accept.
		{"length=8,order=be,adjust=-4", big, ff(0, 0, 0, 0, 0, 0, 0, 3), result{0, 0, 0, framing.ErrBadFrame}},
		{"length=8,order=be,adjust=-4", big, ff(0, 0, 0, 0, 0, 0, 0, 4), result{8, 8, 8, nil}},
		// An adjusted size of exactly int32 max plus one.
		{"length=8,order=be,adjust=-4", big, ff(0, 0, 0, 0, 0x80, 0, 0, 3), result{0, 0, 0, framing.ErrTooLarge}},
		{"length=4,order=le,adjust=1048576", big, ff(0, 0, 0xF0, 0x3F), result{0, 0, 4 + 1<<30, nil}},
		{"length=4,order=le,adjust=1048576", big, ff(1, 0, 0xF0, 0x3F), result{0, 0, 0, framing.ErrTooLarge}},
		{"length=4,order=le,adjust=-1048576", big, ff(0xff, 0xff, 0x0f, 0), result{0, 0, 0, framing.ErrBadFrame}},
		{"length=4,order=le,adjust=-1048576", big, ff(0, 0, 0x10, 0), result{4, 4, 4, nil}},
		{"length=4,order=le,adjust=-1048576", big, ff(0xff, 0xff, 0xff, 0xff), result{0, 0, 0, framing.ErrTooLarge}},
		// PostgreSQL: type byte, then a length that counts itself.
		{"offset=1,length=4,order=be,adjust=-4", big, ff('Q', 0, 0, 0, 4, 'x'), result{5, 5, 5, nil}},
		{"offset=1,length=4,order=be,adjust=-4", big, ff('Q', 0, 0, 0, 6, 'h', 'i'), result{7, 5, 7, nil}},
		{"offset=1,length=4,order=be,adjust=-4", big, ff('Q', 0, 0, 0, 3), result{0, 0, 0, framing.ErrBadFrame}},
		{"offset=1,length=4,order=be,adjust=-4", big, ff('Q', 0, 0, 0, 0), result{0, 0, 0, framing.ErrBadFrame}},
		{"offset=1,length=4,order=be,adjust=-4", big, ff('Q', 0xff, 0xff, 0xff, 0xff), result{0, 0, 0, framing.ErrTooLarge}},
		{"offset=1,length=4,order=be,adjust=-4", 10, ff('Q', 0, 0, 0, 15), result{0, 0, 0, framing.ErrTooLarge}},
		{"offset=1,length=4,order=be,adjust=-4", 10, ff('Q', 0, 0, 0, 14), result{0, 0, 15, nil}},
		{"offset=1,length=4,order=be,adjust=-4", 10, ff('Q', 0, 0), result{0, 0, 5, nil}},
		// MySQL: 3-byte little-endian length, then a sequence byte.
		{"mysql", big, ff(0, 0, 0, 7, 'x'), result{4, 3, 4, nil}},
		{"mysql", big, ff(1, 0, 0, 7, 'x'), result{5, 3, 5, nil}},
		{"mysql", big, ff(0xff, 0xff, 0xff), result{0, 0, 3 + 1<<24, nil}},
		{"mysql", 1 << 24, ff(0xff, 0xff, 0xff), result{0, 0, 3 + 1<<24, nil}},
		{"mysql", 1<<24 - 1, ff(0xff, 0xff, 0xff), result{0, 0, 0, framing.ErrTooLarge}},
		{"grpc", 10, ff(1, 0, 0, 0, 3, 'a', 'b', 'c'), result{8, 5, 8, nil}},
		{"grpc", 10, ff(1), result{0, 0, 5, nil}},
		{"grpc", 10, nil, result{0, 0, 5, nil}},
		// Varints.
		{"varint", big, ff(0), result{1, 1, 1, nil}},
		{"varint", big, ff(0x96, 0x01), result{0, 0, 152, nil}},
		{"varint", big, ff(0x80, 0x00), result{2, 2, 2, nil}}, // non-minimal zero
		{"varint", big, ff(0x81, 0x80, 0x80, 0x80, 0x00), result{0, 0, 6, nil}},
		{"varint", big, rep(0x80, 4), result{0, 0, 5, nil}},
		{"varint", big, rep(0x80, 5), result{0, 0, 0, framing.ErrBadFrame}},
		{"varint", big, ff(0xff, 0xff, 0xff, 0xff, 0x0f), result{0, 0, 0, framing.ErrTooLarge}}, // 2^32-1
		{"varint", big, ff(0x80, 0x80, 0x80, 0x80, 0x04), result{0, 0, 5 + 1<<30, nil}},
		{"varint", big, ff(0x81, 0x80, 0x80, 0x80, 0x04), result{0, 0, 0, framing.ErrTooLarge}},
		{"length=varint,varint-max=10", big, cat(rep(0xff, 9), ff(0x01)), result{0, 0, 0, framing.ErrTooLarge}}, // 2^64-1
		{"length=varint,varint-max=10", big, cat(rep(0x80, 9), ff(0x01)), result{0, 0, 0, framing.ErrTooLarge}}, // 2^63
		{"length=varint,varint-max=10", big, cat(rep(0xff, 9), ff(0x02)), result{0, 0, 0, framing.ErrBadFrame}}, // 2^64+...
		{"length=varint,varint-max=10", big, cat(rep(0x80, 9), ff(0x02)), result{0, 0, 0, framing.ErrBadFrame}}, // 2^64 exactly
		{"length=varint,varint-max=10", big, cat(rep(0x80, 9), ff(0x81)), result{0, 0, 0, framing.ErrBadFrame}},
		{"length=varint,varint-max=10", big, cat(rep(0x80, 9), ff(0x00)), result{10, 10, 10, nil}},
		{"length=varint,varint-max=10", big, rep(0x80, 9), result{0, 0, 10, nil}},
		{"length=varint,varint-max=1,offset=2", big, ff(9, 9, 0x7f), result{0, 0, 130, nil}},
		{"length=varint,varint-max=1,offset=2", big, ff(9, 9, 0x80), result{0, 0, 0, framing.ErrBadFrame}},
		{"length=varint,varint-max=2,adjust=-3", big, ff(0x02), result{0, 0, 0, framing.ErrBadFrame}},
		{"length=varint,varint-max=2,adjust=-3", big, ff(0x03), result{1, 1, 1, nil}},
		// MQTT: packet type byte, then a varint of at most 4 bytes.
		{"mqtt", big, ff(0x30, 0x00), result{2, 2, 2, nil}},
		{"mqtt", big, ff(0xe0, 0x00, 0xff), result{2, 2, 2, nil}},
		{"mqtt", big, ff(0x30, 0x80, 0x80), result{0, 0, 4, nil}},
		{"mqtt", big, ff(0x30, 0xff, 0xff, 0xff, 0x7f), result{0, 0, 5 + 268435455, nil}},
		{"mqtt", 1 << 20, ff(0x30, 0xff, 0xff, 0xff, 0x7f), result{0, 0, 0, framing.ErrTooLarge}},
		{"mqtt", big, ff(0x30, 0x80, 0x80, 0x80, 0x80), result{0, 0, 0, framing.ErrBadFrame}},
		{"mqtt", big, ff(0x30, 0x80, 0x80, 0x80, 0x80, 0x01), result{0, 0, 0, framing.ErrBadFrame}},
	}
	for _, tt := range tests {
		s, err := framing.ParseSpec(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		f := mustNew(t, s, tt.max)
		if got := next(f, tt.buf); got != tt.want {
			t.Errorf("%s max %d: Next(% x) = %+v, want %+v", tt.spec, tt.max, tt.buf, got, tt.want)
		}
	}
}

// TestNextEveryFormat frames the smallest body, a small one and the largest
// allowed under two maxima, then checks the frame whole, cut at every
// point, and one value over the limit.
func TestNextEveryFormat(t *testing.T) {
	for name, s := range formats(t) {
		for _, max := range []int{0, 1, 300, 70000} {
			f, err := framing.New(s, max)
			if s.Adjust > int64(max) {
				if err == nil {
					t.Errorf("%s max %d: New accepted a format no body fits", name, max)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := bodyRange(s, max)
			for _, size := range []int64{lo, lo + 1, hi} {
				if size > hi {
					continue
				}
				checkFrame(t, name, f, s, uint64(size-s.Adjust), int(size))
			}
			// One over: from the maximum, or from the field itself.
			if hi == int64(max) && uint64(int64(max)+1-s.Adjust) <= fieldMax(s) {
				over := header(s, uint64(int64(max)+1-s.Adjust))
				if got := next(f, over); got.err != framing.ErrTooLarge {
					t.Errorf("%s max %d: one byte over gives %+v", name, max, got)
				}
			}
			// One under: a value Adjust makes -1.
			if s.Adjust < 0 {
				under := header(s, uint64(-s.Adjust-1))
				if got := next(f, under); got.err != framing.ErrBadFrame {
					t.Errorf("%s max %d: adjusted size -1 gives %+v", name, max, got)
				}
			}
		}
	}
}

// checkFrame builds a frame of value v and the given body size by hand and
// checks Next on it and on every prefix of it.
func checkFrame(t *testing.T, name string, f *framing.Format, s framing.Spec, v uint64, size int) {
	t.Helper()
	hdr := header(s, v)
	body := bytes.Repeat([]byte{0x5A}, size)
	frame := append(bytes.Clone(hdr), body...)
	h, n := len(hdr), len(frame)
	if got, want := next(f, frame), (result{n, h, n, nil}); got != want {
		t.Errorf("%s: Next(frame of %d) = %+v, want %+v", name, size, got, want)
		return
	}
	if got, want := next(f, append(frame, 0x80, 0xff)), (result{n, h, n, nil}); got != want {
		t.Errorf("%s: Next(frame of %d + junk) = %+v, want %+v", name, size, got, want)
	}
	for k := 0; k < n; k++ {
		// Before the header is complete, need is the smallest total that
		// could complete it: the whole fixed field, or one more varint
		// byte (all bytes so far had the continuation bit).
		need := n
		switch {
		case k >= h:
		case s.Length != framing.LengthVarint:
			need = h
		case k <= s.Offset:
			need = s.Offset + 1
		default:
			need = k + 1
		}
		if got, want := next(f, frame[:k]), (result{0, 0, need, nil}); got != want {
			t.Errorf("%s: Next(first %d of %d-byte frame) = %+v, want %+v", name, k, n, got, want)
		}
	}
}

// TestBackToBack decodes many frames of varying sizes from one buffer and
// from the same stream fed a few bytes at a time.
func TestBackToBack(t *testing.T) {
	for name, s := range formats(t) {
		f := mustNew(t, s, 1000)
		lo, hi := bodyRange(s, 1000)
		var stream []byte
		var want [][]byte
		for i := range 200 {
			size := lo + int64(i*37)%(hi-lo+1)
			body := make([]byte, size)
			for j := range body {
				body[j] = byte(i + j)
			}
			prefix := bytes.Repeat([]byte{byte(i)}, s.Offset)
			var err error
			if stream, err = f.Append(stream, prefix, body); err != nil {
				t.Fatalf("%s: Append(%d): %v", name, size, err)
			}
			want = append(want, body)
		}
		for _, step := range []int{len(stream), 1, 3, 7} {
			var got [][]byte
			var pending []byte
			for off := 0; off < len(stream); off += step {
				pending = append(pending, stream[off:min(off+step, len(stream))]...)
				for {
					n, h, need, err := f.Next(pending)
					if err != nil {
						t.Fatalf("%s step %d: %v", name, step, err)
					}
					if n == 0 {
						if need <= len(pending) {
							t.Fatalf("%s step %d: need %d with %d buffered", name, step, need, len(pending))
						}
						break
					}
					if !bytes.Equal(pending[:s.Offset], bytes.Repeat([]byte{byte(len(got))}, s.Offset)) {
						t.Fatalf("%s step %d: frame %d prefix % x", name, step, len(got), pending[:s.Offset])
					}
					got = append(got, bytes.Clone(pending[h:n]))
					pending = pending[n:]
				}
			}
			if len(pending) != 0 || len(got) != len(want) {
				t.Fatalf("%s step %d: %d frames and %d bytes left, want %d frames", name, step, len(got), len(pending), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%s step %d: frame %d differs", name, step, i)
				}
			}
		}
	}
}

// TestRoundTrip encodes bodies of many sizes with Append and PutHeader and
// checks the decoder and the hand-built header agree.
func TestRoundTrip(t *testing.T) {
	for name, s := range formats(t) {
		f := mustNew(t, s, 1<<17)
		lo, hi := bodyRange(s, 1<<17)
		sizes := []int64{lo, lo + 1, 127, 128, 255, 256, 16383, 16384, 65535, 65536, hi - 1, hi}
		for _, size := range sizes {
			if size < lo || size > hi {
				continue
			}
			body := bytes.Repeat([]byte{7}, int(size))
			prefix := bytes.Repeat([]byte{0xEE}, s.Offset)
			out, err := f.Append([]byte("head"), prefix, body)
			if err != nil {
				t.Fatalf("%s: Append(%d): %v", name, size, err)
			}
			frame := out[4:]
			h, err := f.HeaderLen(int(size))
			if err != nil {
				t.Fatal(err)
			}
			want := append(header(s, uint64(size-s.Adjust)), body...)
			copy(want, prefix)
			if !bytes.Equal(frame, want) || h != len(frame)-int(size) {
				t.Fatalf("%s: Append(%d) = % x..., HeaderLen %d; want % x...", name, size, frame[:h], h, want[:min(len(want), 32)])
			}
			if got := next(f, frame); got != (result{len(frame), h, len(frame), nil}) {
				t.Fatalf("%s: Next(Append(%d)) = %+v", name, size, got)
			}
			// PutHeader with a nil prefix writes zeros over whatever is there.
			dst := bytes.Repeat([]byte{0xCC}, f.MaxHeader()+1)
			if k := f.PutHeader(dst, nil, int(size)); k != h || !bytes.Equal(dst[:s.Offset], make([]byte, s.Offset)) ||
				!bytes.Equal(dst[s.Offset:h], frame[s.Offset:h]) || dst[h] != 0xCC {
				t.Fatalf("%s: PutHeader(%d) = %d, % x", name, size, k, dst)
			}
		}
	}
}

func TestHeaderLenLimits(t *testing.T) {
	const big = framing.MaxBody
	tests := []struct {
		spec    string
		max     int
		bodyLen int
		want    int // 0 for ErrTooLarge
	}{
		{"u8", big, 0, 1}, {"u8", big, 255, 1}, {"u8", big, 256, 0},
		{"u8", 100, 100, 1}, {"u8", 100, 101, 0},
		{"u16le", big, 65535, 2}, {"u16be", big, 65536, 0},
		{"u24le", big, 1<<24 - 1, 3}, {"u24be", big, 1 << 24, 0},
		{"u32le", big, big, 4}, {"u32le", big, big + 1, 0}, {"u32be", 10, 11, 0},
		{"u32le", big, -1, 0},
		{"u64be", big, big, 8}, {"u64be", big, big + 1, 0},
		{"varint", big, 0, 1}, {"varint", big, 127, 1}, {"varint", big, 128, 2},
		{"varint", big, 16383, 2}, {"varint", big, 16384, 3}, {"varint", big, 1<<21 - 1, 3},
		{"varint", big, 1 << 21, 4}, {"varint", big, 1<<28 - 1, 4}, {"varint", big, 1 << 28, 5}, {"varint", big, big, 5},
		{"length=varint,varint-max=1", big, 127, 1}, {"length=varint,varint-max=1", big, 128, 0},
		{"length=varint,varint-max=2,adjust=-3", big, 0, 1}, {"length=varint,varint-max=2,adjust=-3", big, 16380, 2},
		{"length=varint,varint-max=2,adjust=-3", big, 16381, 0},
		{"mqtt", big, 0, 2}, {"mqtt", big, 1<<28 - 1, 5}, {"mqtt", big, 1 << 28, 0},
		{"grpc", big, 5, 5},
		{"mysql", big, 0, 0}, {"mysql", big, 1, 3}, {"mysql", big, 1 << 24, 3}, {"mysql", big, 1<<24 + 1, 0},
		{"offset=1,length=4,order=be,adjust=-4", big, 0, 5},
		{"offset=1,length=4,order=be,adjust=-4", big, -1, 0},
		{"offset=1,length=4,order=be,adjust=-4", big, -4, 0},
		{"offset=1,length=4,order=be,adjust=-4", big, big, 5},
		{"length=1,adjust=-255", big, 0, 1}, {"length=1,adjust=-255", big, 1, 0},
		{"length=4,order=le,offset=16,adjust=1048576", big, 1<<20 - 1, 0},
		{"length=4,order=le,offset=16,adjust=1048576", big, 1 << 20, 20},
	}
	for _, tt := range tests {
		s, _ := framing.ParseSpec(tt.spec)
		f := mustNew(t, s, tt.max)
		got, err := f.HeaderLen(tt.bodyLen)
		if tt.want == 0 && err != framing.ErrTooLarge || tt.want != 0 && (err != nil || got != tt.want) {
			t.Errorf("%s max %d: HeaderLen(%d) = %d, %v; want %d", tt.spec, tt.max, tt.bodyLen, got, err, tt.want)
		}
		if err != nil {
			continue
		}
		// The header announces exactly bodyLen.
		hdr := make([]byte, got)
		f.PutHeader(hdr, nil, tt.bodyLen)
		want := result{0, 0, got + tt.bodyLen, nil}
		if tt.bodyLen == 0 {
			want = result{got, got, got, nil}
		}
		if r := next(f, hdr); r != want {
			t.Errorf("%s: Next(PutHeader(%d)) = %+v, want %+v", tt.spec, tt.bodyLen, r, want)
		}
	}
}

func TestPrefixAndMisuse(t *testing.T) {
	s, _ := framing.ParseSpec("grpc")
	f := mustNew(t, s, 100)
	if f.Offset() != 1 || f.MaxHeader() != 5 || f.Spec() != s {
		t.Fatalf("Offset %d MaxHeader %d Spec %v", f.Offset(), f.MaxHeader(), f.Spec())
	}
	out, err := f.Append([]byte{9}, []byte{1}, []byte("ab"))
	if err != nil || !bytes.Equal(out, []byte{9, 1, 0, 0, 0, 2, 'a', 'b'}) {
		t.Fatalf("Append = % x, %v", out, err)
	}
	for _, p := range [][]byte{{}, {1, 2}} {
		if out, err := f.Append([]byte{9}, p, []byte("ab")); err != framing.ErrBadPrefix || !bytes.Equal(out, []byte{9}) {
			t.Errorf("Append with %d-byte prefix = % x, %v", len(p), out, err)
		}
	}
	if out, err := f.Append([]byte{9}, nil, make([]byte, 101)); err != framing.ErrTooLarge || !bytes.Equal(out, []byte{9}) {
		t.Errorf("Append of 101 bytes = % x, %v", out, err)
	}
	mustPanic(t, framing.ErrBadPrefix, func() { f.PutHeader(make([]byte, 8), []byte{1, 2}, 1) })
	mustPanic(t, framing.ErrTooLarge, func() { f.PutHeader(make([]byte, 8), nil, 101) })
	mustPanic(t, framing.ErrTooLarge, func() { f.PutHeader(make([]byte, 8), nil, -1) })

	m, _ := framing.ParseSpec("mqtt")
	f = mustNew(t, m, framing.MaxBody)
	if f.MaxHeader() != 5 {
		t.Errorf("mqtt MaxHeader = %d", f.MaxHeader())
	}
	if v, ok := f.LengthValue([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}); !ok || v != 1<<28-1 {
		t.Errorf("LengthValue = %d, %v", v, ok)
	}
	for _, b := range [][]byte{{0x30, 0xff}, {0x30, 0x80, 0x80, 0x80, 0x80}, nil} {
		if _, ok := f.LengthValue(b); ok {
			t.Errorf("LengthValue(% x) ok", b)
		}
	}
	for spec, want := range map[string]uint64{"u24be": 0x010203, "u24le": 0x030201, "u16be": 0x0102, "grpc": 0x02030405, "mysql": 0x030201} {
		s, _ := framing.ParseSpec(spec)
		if v, ok := mustNew(t, s, 10).LengthValue([]byte{1, 2, 3, 4, 5}); !ok || v != want {
			t.Errorf("%s: LengthValue = %#x, %v; want %#x", spec, v, ok, want)
		}
	}
	u, _ := framing.ParseSpec("u64be")
	f = mustNew(t, u, 10)
	if v, ok := f.LengthValue(bytes.Repeat([]byte{0xff}, 8)); !ok || v != math.MaxUint64 {
		t.Errorf("LengthValue = %d, %v", v, ok)
	}
}

func mustPanic(t *testing.T, want error, fn func()) {
	t.Helper()
	defer func() {
		if err, _ := recover().(error); !errors.Is(err, want) {
			t.Errorf("panic %v, want %v", err, want)
		}
	}()
	fn()
}

// TestNoAllocs holds the decode and encode paths to zero allocations for
// every format.
func TestNoAllocs(t *testing.T) {
	for name, s := range formats(t) {
		f := mustNew(t, s, 1<<16)
		lo, hi := bodyRange(s, 1<<16)
		body := make([]byte, min(lo+64, hi))
		stream, err := f.Append(nil, nil, body)
		if err != nil {
			t.Fatal(err)
		}
		stream, _ = f.Append(stream, nil, body)
		hdr := make([]byte, f.MaxHeader())
		dst := make([]byte, 0, 256)
		var sink int
		allocs := testing.AllocsPerRun(100, func() {
			for buf := stream; ; {
				n, _, need, err := f.Next(buf)
				if n == 0 || err != nil {
					sink += need
					break
				}
				buf = buf[n:]
			}
			sink += f.PutHeader(hdr, nil, len(body))
			if _, err := f.HeaderLen(len(body)); err != nil {
				panic(err)
			}
			dst, _ = f.Append(dst[:0], nil, body)
			if _, ok := f.LengthValue(stream); !ok {
				panic("LengthValue")
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run", name, allocs)
		}
		_ = sink
	}
}
