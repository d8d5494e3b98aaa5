package framing_test

import (
	"bytes"
	"math/big"
	"testing"

	"github.com/frameloop/frameloop/internal/framing"
)

// fuzzSpec turns fuzz input into a Spec and a body maximum. The ranges go
// one step past every limit so that validation is fuzzed too.
func fuzzSpec(offset, length uint8, be bool, adjust int32, varintMax uint8, maxBody uint32) (framing.Spec, int) {
	s := framing.Spec{
		Offset:    int(offset%(framing.MaxOffset+2)) - int(offset>>7), // -1..17
		Length:    []int{1, 2, 3, 4, 8, framing.LengthVarint, 0, 5}[length%8],
		BigEndian: be,
		Adjust:    int64(adjust) % (framing.MaxAdjust + 2),
	}
	if s.Length == framing.LengthVarint || varintMax >= 0xF0 {
		s.VarintMax = int(varintMax % (framing.MaxVarintLen + 2)) // 0 means 5; 11 is wrong
	}
	return s, int(maxBody % (framing.MaxBody + 2))
}

// refValid says whether New must accept s and maxBody, from the documented
// rules and nothing else.
func refValid(s framing.Spec, maxBody int) bool {
	width, vmax := s.Length, s.VarintMax
	if width == 0 {
		width = 4
	}
	if width == framing.LengthVarint && vmax == 0 {
		vmax = 5
	}
	switch {
	case s.Offset < 0 || s.Offset > 16,
		width != 1 && width != 2 && width != 3 && width != 4 && width != 8 && width != framing.LengthVarint,
		width == framing.LengthVarint && (vmax < 1 || vmax > 10),
		width != framing.LengthVarint && vmax != 0,
		s.Adjust < -1<<20 || s.Adjust > 1<<20,
		maxBody < 0 || maxBody > 1<<30:
		return false
	}
	// Some length value must give a body in [0, maxBody].
	bits := 8 * width
	if width == framing.LengthVarint {
		bits = 7 * vmax
	}
	top := new(big.Int).Lsh(big.NewInt(1), uint(bits))
	top.Sub(top, big.NewInt(1))
	top.Add(top, big.NewInt(s.Adjust)) // the largest body
	return top.Sign() >= 0 && s.Adjust <= int64(maxBody)
}

// refNext is the reference decoder: byte at a time into a big.Int, so it
// cannot overflow and shares no code with Format.Next. It takes the raw
// Spec and applies its documented defaults itself.
func refNext(s framing.Spec, maxBody int, buf []byte) result {
	width, vmax := s.Length, s.VarintMax
	if width == 0 {
		width = 4
	}
	if vmax == 0 {
		vmax = 5
	}
	v := new(big.Int)
	var hdr int
	if width == framing.LengthVarint {
		for i := 0; ; i++ {
			if i == vmax {
				return result{err: framing.ErrBadFrame} // too long
			}
			pos := s.Offset + i
			if pos >= len(buf) {
				return result{need: pos + 1}
			}
			group := big.NewInt(int64(buf[pos] & 0x7f))
			v.Or(v, group.Lsh(group, uint(7*i)))
			if buf[pos] < 0x80 {
				hdr = pos + 1
				break
			}
		}
		if v.BitLen() > 64 {
			return result{err: framing.ErrBadFrame}
		}
	} else {
		hdr = s.Offset + width
		if len(buf) < hdr {
			return result{need: hdr}
		}
		for i := 0; i < width; i++ { // most significant byte first
			j := i
			if !s.BigEndian || width == 1 {
				j = width - 1 - i
			}
			v.Lsh(v, 8)
			v.Or(v, big.NewInt(int64(buf[s.Offset+j])))
		}
	}
	body := v.Add(v, big.NewInt(s.Adjust))
	switch {
	case body.Cmp(big.NewInt(int64(maxBody))) > 0:
		return result{err: framing.ErrTooLarge}
	case body.Sign() < 0:
		return result{err: framing.ErrBadFrame}
	}
	total := hdr + int(body.Int64())
	if len(buf) < total {
		return result{need: total}
	}
	return result{total, hdr, total, nil}
}

// FuzzNext checks Format.Next against refNext frame after frame through a
// random stream, on a random spec, and New against refValid. Its seeds
// are in testdata/fuzz/FuzzNext, named for what they exercise.
func FuzzNext(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, offset, length uint8, be bool, adjust int32, varintMax uint8, maxBody uint32) {
		s, max := fuzzSpec(offset, length, be, adjust, varintMax, maxBody)
		ff, err := framing.New(s, max)
		if (err == nil) != refValid(s, max) {
			t.Fatalf("New(%+v, %d) error = %v, reference says valid = %v", s, max, err, refValid(s, max))
		}
		if err != nil {
			return
		}
		for buf := data; ; {
			got, want := next(ff, buf), refNext(s, max, buf)
			if got != want {
				t.Fatalf("%v max %d: Next(% x) = %+v, reference %+v", ff.Spec(), max, buf, got, want)
			}
			// Complete, Next's inlinable front, agrees with it: a complete
			// frame of the default format, or nothing.
			if n, ok := ff.Complete(buf); ok != (got.n > 0 && got.err == nil && ff.Spec() == framing.Spec{Length: 4}) || ok && (n != got.n || got.h != 4) {
				t.Fatalf("%v: Complete(% x) = %d, %v; Next says %+v", ff.Spec(), buf, n, ok, got)
			}
			if got.n == 0 {
				if got.err == nil && got.need <= len(buf) {
					t.Fatalf("need %d with %d bytes", got.need, len(buf))
				}
				return
			}
			if got.h <= ff.Offset() || got.h > ff.MaxHeader() || got.n-got.h > max {
				t.Fatalf("frame n=%d h=%d out of bounds", got.n, got.h)
			}
			if v, ok := ff.LengthValue(buf); !ok || int64(v)+s.Adjust != int64(got.n-got.h) {
				t.Fatalf("LengthValue = %d, %v for a %d-byte body", v, ok, got.n-got.h)
			}
			buf = buf[got.n:]
		}
	})
}

// FuzzRoundTrip appends a frame and decodes it, and checks HeaderLen and
// PutHeader for body sizes too large to allocate, on a random spec. Its
// seeds are in testdata/fuzz/FuzzRoundTrip.
func FuzzRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, offset, length uint8, be bool, adjust int32, varintMax uint8, maxBody uint32, prefix, body []byte, bodyLen uint32) {
		s, max := fuzzSpec(offset, length, be, adjust, varintMax, maxBody)
		ff, err := framing.New(s, max)
		if err != nil {
			return
		}
		// A body of n bytes can be framed iff n is within the maximum and
		// the field can hold n-Adjust.
		fits := func(n int64) bool {
			v := n - s.Adjust
			return n >= 0 && n <= int64(max) && v >= 0 && new(big.Int).SetInt64(v).Cmp(new(big.Int).SetUint64(fieldMax(ff.Spec()))) <= 0
		}

		// Append, then Next, on a dst that already holds something.
		// The corpus cannot spell nil, so an empty prefix stands for nil
		// (zeros), a long one is cut to size and a short one is wrong.
		off := ff.Offset()
		p := prefix
		if len(p) == 0 {
			p = nil
		} else if len(p) > off {
			p = p[:off]
		}
		head := []byte("head")
		out, err := ff.Append(bytes.Clone(head), p, body)
		switch {
		case p != nil && len(p) != off:
			if err != framing.ErrBadPrefix {
				t.Fatalf("Append with %d-byte prefix, offset %d: %v", len(p), off, err)
			}
		case !fits(int64(len(body))):
			if err != framing.ErrTooLarge {
				t.Fatalf("Append of %d bytes: %v, want ErrTooLarge", len(body), err)
			}
		case err != nil:
			t.Fatalf("Append of %d bytes: %v", len(body), err)
		default:
			frame := out[len(head):]
			h, err := ff.HeaderLen(len(body))
			want := result{len(frame), h, len(frame), nil}
			if err != nil || next(ff, frame) != want || refNext(s, max, frame) != want {
				t.Fatalf("Next(Append) = %+v, reference %+v, want %+v (HeaderLen err %v)", next(ff, frame), refNext(s, max, frame), want, err)
			}
			if p == nil {
				p = make([]byte, off)
			}
			if !bytes.Equal(out[:len(head)], head) || !bytes.Equal(frame[:off], p) || !bytes.Equal(frame[h:], body) {
				t.Fatalf("Append wrote % x", out)
			}
			if got := next(ff, append(frame, 0x80, 0x80)); got != want {
				t.Fatalf("Next with trailing bytes = %+v", got)
			}
		}
		if err != nil {
			if !bytes.Equal(out, head) {
				t.Fatalf("failed Append changed dst to % x", out)
			}
		}

		// HeaderLen and PutHeader for any size, decoded as far as a
		// header alone allows.
		n := int(bodyLen % (framing.MaxBody + 16))
		h, err := ff.HeaderLen(n)
		if (err == nil) != fits(int64(n)) {
			t.Fatalf("HeaderLen(%d) = %d, %v; fits = %v", n, h, err, fits(int64(n)))
		}
		if err != nil {
			return
		}
		hdr := make([]byte, ff.MaxHeader()+1)
		if k := ff.PutHeader(hdr, nil, n); k != h || h > ff.MaxHeader() {
			t.Fatalf("PutHeader(%d) = %d, HeaderLen %d", n, k, h)
		}
		want := result{need: h + n}
		if n == 0 {
			want = result{h, h, h, nil}
		}
		if got, ref := next(ff, hdr[:h]), refNext(s, max, hdr[:h]); got != want || ref != want {
			t.Fatalf("Next(PutHeader(%d)) = %+v, reference %+v, want %+v", n, got, ref, want)
		}
	})
}
