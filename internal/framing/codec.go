package framing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

var (
	// ErrTooLarge reports a body above the maximum, or one that the
	// length field cannot express.
	ErrTooLarge = errors.New("framing: body size outside what the format allows")
	// ErrBadFrame reports a length field that is not a length: a varint
	// longer than VarintMax bytes or above 2^64-1, or a length value that
	// Adjust makes negative.
	ErrBadFrame = errors.New("framing: malformed length field")
	// ErrBadPrefix reports a prefix whose length is not the Offset.
	ErrBadPrefix = errors.New("framing: prefix length differs from the offset")
)

// kind selects the length-field codec; one switch on it replaces a width
// and a byte order.
type kind uint8

const (
	u8 kind = iota
	u16le
	u16be
	u24le
	u24be
	u32le
	u32be
	u64le
	u64be
	varint
)

// Format is a compiled Spec with a body maximum. It is immutable, so one
// Format may serve any number of goroutines.
type Format struct {
	// fast marks plain u32le (no prefix, no adjustment), the default,
	// which Next and Append handle first, in internal/frame's steps.
	fast    bool
	kind    kind
	off     int    // prefix size
	hdr     int    // header size; for a varint, the smallest one
	adjust  int64  // Spec.Adjust
	lo, hi  uint64 // accepted length values: body 0..maxBody
	max     uint64 // largest value the field can hold
	maxBody int
	spec    Spec
}

// New compiles s for bodies of at most maxBody bytes (0..MaxBody).
func New(s Spec, maxBody int) (*Format, error) {
	s = s.normal()
	if err := s.validate(); err != nil {
		return nil, err
	}
	if maxBody < 0 || maxBody > MaxBody {
		return nil, fmt.Errorf("framing: max body must be 0 to %d bytes, got %d", MaxBody, maxBody)
	}
	if s.Adjust > int64(maxBody) {
		return nil, fmt.Errorf("framing: adjust %d makes every body larger than the maximum %d", s.Adjust, maxBody)
	}
	f := &Format{
		off:     s.Offset,
		hdr:     s.Offset + s.Length,
		adjust:  s.Adjust,
		hi:      uint64(int64(maxBody) - s.Adjust), // >= 0, checked above
		max:     s.fieldMax(),
		maxBody: maxBody,
		spec:    s,
	}
	if s.Adjust < 0 {
		f.lo = uint64(-s.Adjust)
	}
	switch s.Length {
	case 1:
		f.kind = u8
	case 2:
		f.kind = u16le
	case 3:
		f.kind = u24le
	case 4:
		f.kind = u32le
	case 8:
		f.kind = u64le
	case LengthVarint:
		f.kind = varint
		f.hdr = s.Offset + 1
	}
	if s.BigEndian {
		f.kind++ // each big-endian kind follows its little-endian twin
	}
	f.fast = f.kind == u32le && f.off == 0 && f.adjust == 0
	return f, nil
}

// Spec returns the Spec f was compiled from, normalised: Length 0 becomes
// 4, VarintMax 0 becomes 5 for a varint, BigEndian is false where ignored.
func (f *Format) Spec() Spec { return f.spec }

// Offset returns the size of the prefix before the length field.
func (f *Format) Offset() int { return f.off }

// MaxHeader returns the largest header: prefix plus the widest length field.
func (f *Format) MaxHeader() int {
	if f.kind == varint {
		return f.off + f.spec.VarintMax
	}
	return f.hdr
}

// Next examines the frame at the start of buf.
//
// A complete frame has total size n > 0 and header size h (prefix plus
// length field): its prefix is buf[:Offset()] and its body buf[h:n]; need
// is n too. An incomplete one has n == 0 and need > len(buf): the frame's
// total size once the header is complete, before that the smallest total
// that could complete the header. A malformed one returns ErrTooLarge or
// ErrBadFrame, decided as soon as the length field is complete, whatever
// follows.
func (f *Format) Next(buf []byte) (n, h, need int, err error) {
	// Callers inline internal/frame.Next; no Next with a general path fits
	// the inliner's budget. Next makes no calls instead, which spares it
	// the stack check, and the default format goes first in the same steps
	// as frame.Next.
	if f.fast {
		if len(buf) < 4 {
			return 0, 0, 4, nil
		}
		v := binary.LittleEndian.Uint32(buf)
		if uint64(v) > f.hi {
			return 0, 0, 0, ErrTooLarge
		}
		n = 4 + int(v) // v <= MaxBody: no wrap on 32-bit
		if len(buf) < n {
			return 0, 0, n, nil
		}
		return n, 4, n, nil
	}
	h = f.hdr
	if len(buf) < h {
		return 0, 0, h, nil
	}
	var v uint64
	b := buf[f.off:]
	switch f.kind {
	case u8:
		v = uint64(b[0])
	case u16le:
		v = uint64(binary.LittleEndian.Uint16(b))
	case u16be:
		v = uint64(binary.BigEndian.Uint16(b))
	case u24le:
		v = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16
	case u24be:
		v = uint64(b[2]) | uint64(b[1])<<8 | uint64(b[0])<<16
	case u32le:
		v = uint64(binary.LittleEndian.Uint32(b))
	case u32be:
		v = uint64(binary.BigEndian.Uint32(b))
	case u64le:
		v = binary.LittleEndian.Uint64(b)
	case u64be:
		v = binary.BigEndian.Uint64(b)
	case varint:
		if v, h, need, err = f.varint(b); h == 0 {
			return 0, 0, need, err
		}
	}
	// Compare the raw value with the precomputed bounds before adding
	// anything to it: v may be as large as 2^64-1.
	if v > f.hi {
		return 0, 0, 0, ErrTooLarge
	}
	if v < f.lo {
		return 0, 0, 0, ErrBadFrame
	}
	// Now 0 <= v+adjust <= maxBody <= MaxBody, so none of this wraps.
	n = h + int(int64(v)+f.adjust)
	if len(buf) < n {
		return 0, 0, n, nil
	}
	return n, h, n, nil
}

// varint decodes a varint length at the start of b (which follows the
// prefix). Non-minimal encodings such as 0x80 0x00 are accepted, as
// protobuf decoders do.
func (f *Format) varint(b []byte) (v uint64, h, need int, err error) {
	for i := 0; i < f.spec.VarintMax; i++ {
		if i == len(b) {
			return 0, 0, f.off + i + 1, nil
		}
		c := b[i]
		if i == MaxVarintLen-1 && c > 1 {
			// The tenth group holds bit 63 alone; anything more overflows.
			return 0, 0, 0, ErrBadFrame
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, f.off + i + 1, 0, nil
		}
	}
	return 0, 0, 0, ErrBadFrame // still continuing after VarintMax bytes
}

// Complete is the inlinable front of Next for the default format (u32le,
// no prefix, no adjustment): n is the size of the complete, valid frame at
// the start of buf, whose header is 4 bytes. ok is false for every other
// format, and when buf does not start with a complete valid frame: Next
// then says what it is. Next itself cannot be inlined; a caller that
// decodes frames in a tight loop saves the call for the common case.
func (f *Format) Complete(buf []byte) (n int, ok bool) {
	if !f.fast || len(buf) < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(buf)
	if uint64(v) > f.hi || int(v) > len(buf)-4 {
		return 0, false
	}
	return 4 + int(v), true
}

// LengthValue returns the raw value of the length field at the start of
// buf, before Adjust, for diagnostics such as logging what an oversized
// header announced. ok is false if the field is incomplete or malformed.
// It is off the hot path, so it reads fixed widths a byte at a time.
func (f *Format) LengthValue(buf []byte) (v uint64, ok bool) {
	if len(buf) < f.hdr {
		return 0, false
	}
	if f.kind == varint {
		v, h, _, _ := f.varint(buf[f.off:])
		return v, h > 0
	}
	b := buf[f.off:f.hdr]
	for i := range b {
		c := b[len(b)-1-i]
		if f.spec.BigEndian {
			c = b[i]
		}
		v = v<<8 | uint64(c)
	}
	return v, true
}

// HeaderLen returns the header size of a frame whose body is bodyLen bytes,
// or ErrTooLarge if no frame can carry it: bodyLen above the maximum, or
// bodyLen - Adjust negative or beyond what the length field can hold.
func (f *Format) HeaderLen(bodyLen int) (int, error) {
	v, err := f.value(bodyLen)
	if err != nil {
		return 0, err
	}
	if f.kind == varint {
		return f.off + varintLen(v), nil
	}
	return f.hdr, nil
}

// value returns the length value announcing a body of bodyLen bytes.
func (f *Format) value(bodyLen int) (uint64, error) {
	if bodyLen < 0 || bodyLen > f.maxBody {
		return 0, ErrTooLarge
	}
	v := int64(bodyLen) - f.adjust
	if v < 0 || uint64(v) > f.max {
		return 0, ErrTooLarge
	}
	return uint64(v), nil
}

func varintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// PutHeader writes the header of a frame whose body is bodyLen bytes into
// dst, which must have room for HeaderLen(bodyLen) bytes, and returns its
// size. prefix must be exactly Offset() bytes, or nil for zeros. Like
// encoding/binary's Put functions it panics on misuse: a prefix of the
// wrong size (ErrBadPrefix) or a bodyLen HeaderLen rejects (ErrTooLarge),
// since writing a truncated length would corrupt the stream silently.
func (f *Format) PutHeader(dst, prefix []byte, bodyLen int) int {
	if prefix != nil && len(prefix) != f.off {
		panic(ErrBadPrefix)
	}
	v, err := f.value(bodyLen)
	if err != nil {
		panic(err)
	}
	return f.put(dst, prefix, v)
}

func (f *Format) put(dst, prefix []byte, v uint64) int {
	if prefix == nil {
		clear(dst[:f.off])
	} else {
		copy(dst[:f.off], prefix)
	}
	b := dst[f.off:]
	switch f.kind {
	case u8:
		b[0] = byte(v)
	case u16le:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case u16be:
		binary.BigEndian.PutUint16(b, uint16(v))
	case u24le:
		_ = b[2]
		b[0], b[1], b[2] = byte(v), byte(v>>8), byte(v>>16)
	case u24be:
		_ = b[2]
		b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v)
	case u32le:
		binary.LittleEndian.PutUint32(b, uint32(v))
	case u32be:
		binary.BigEndian.PutUint32(b, uint32(v))
	case u64le:
		binary.LittleEndian.PutUint64(b, v)
	case u64be:
		binary.BigEndian.PutUint64(b, v)
	case varint:
		return f.off + binary.PutUvarint(b, v)
	}
	return f.hdr
}

// Append appends a frame with the given prefix (nil for zeros) and body to
// dst. On error dst is returned unchanged.
func (f *Format) Append(dst, prefix, body []byte) ([]byte, error) {
	if prefix != nil && len(prefix) != f.off {
		return dst, ErrBadPrefix
	}
	v, err := f.value(len(body))
	if err != nil {
		return dst, err
	}
	if f.fast {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(v))
	} else {
		h := f.hdr
		if f.kind == varint {
			h = f.off + varintLen(v)
		}
		m := len(dst)
		dst = slices.Grow(dst, h+len(body))[:m+h]
		f.put(dst[m:], prefix, v)
	}
	return append(dst, body...), nil
}
