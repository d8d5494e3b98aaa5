package loadgen

import (
	"encoding/binary"
)

// A payload starts with a stamp — the connection id (4 bytes) and the
// frame's sequence number (8 bytes), little-endian — and continues with a
// pattern derived from both. Any byte of a frame can therefore be computed
// from (id, seq, size, offset) alone — the header too, prefix bytes
// included (see wire): the sender regenerates what the socket did not take,
// and the receiver checks replies as they stream in, at any split, without
// a stored copy. A payload shorter than the stamp carries the stamp's first
// bytes; its length is checked too.
const stampSize = 12

// leadSize is the largest frame header plus the stamp: the bytes before the
// pattern.
const leadSize = maxHeader + stampSize

const golden = 0x9E3779B97F4A7C15 // 2^64 / phi: the Weyl step of the pattern

// mix64 is splitmix64's finalizer: a cheap bijection that scrambles its input.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// sizes draws payload sizes uniformly from [min, min+span).
type sizes struct {
	min  uint32
	span uint32 // max - min + 1
}

func newSizes(min, max int) sizes { return sizes{min: uint32(min), span: uint32(max - min + 1)} }

// of is the payload size of frame seq on connection id. It is a hash rather
// than a running generator so that sender and receiver agree on any frame's
// size without sharing state, and a receiver can check a reply that skipped
// ahead.
func (s sizes) of(id uint32, seq uint64) int {
	if s.span <= 1 {
		return int(s.min)
	}
	h := mix64(seq*golden ^ uint64(id)<<32 ^ 0x51ce)
	// Lemire's multiply-shift maps 32 random bits onto [0, span) without a division.
	return int(s.min + uint32((h>>32)*uint64(s.span)>>32))
}

// patternSeed is the first pattern word of frame seq on connection id.
func patternSeed(id uint32, seq uint64) uint64 {
	return mix64(uint64(id)<<40 ^ seq ^ 0xa5a5a5a5)
}

func putStamp(p []byte, id uint32, seq uint64) {
	binary.LittleEndian.PutUint32(p, id)
	binary.LittleEndian.PutUint64(p[4:], seq)
}

// fillFrame writes the bytes of frame (id, seq) carrying plen payload bytes,
// starting at byte from of its encoding (header included), into dst. It
// returns how many it wrote: all that remain of the frame, or len(dst).
func (x *wire) fillFrame(dst []byte, id uint32, seq uint64, plen, from int) int {
	if x.fast {
		return fillU32le(dst, id, seq, plen, from)
	}
	return x.fillAny(dst, id, seq, plen, from)
}

// fillAny is fillFrame for any format.
func (x *wire) fillAny(dst []byte, id uint32, seq uint64, plen, from int) int {
	h := x.headerLen(plen)
	n := min(len(dst), h+plen-from)
	if n <= 0 {
		return 0
	}
	dst = dst[:n]
	i := 0
	if leadLen := h + min(plen, stampSize); from == 0 && n >= h+stampSize {
		// The whole lead fits: write it in place.
		x.putHeader(dst, id, seq, plen)
		putStamp(dst[h:], id, seq)
		i = h + stampSize
	} else if from < leadLen {
		var lead [leadSize]byte
		x.putHeader(lead[:], id, seq, plen)
		putStamp(lead[h:], id, seq)
		i = copy(dst, lead[from:leadLen])
	}
	if i < n {
		fillPattern(dst[i:], patternSeed(id, seq), from+i-h-stampSize)
	}
	return n
}

// fillU32le is fillFrame for the default format, where the header is 4
// bytes, the length alone: with constant offsets, the compiler keeps the
// lead in a few stores.
func fillU32le(dst []byte, id uint32, seq uint64, plen, from int) int {
	const h = 4
	n := min(len(dst), h+plen-from)
	if n <= 0 {
		return 0
	}
	dst = dst[:n]
	i := 0
	if leadLen := h + min(plen, stampSize); from < leadLen {
		var lead [h + stampSize]byte
		binary.LittleEndian.PutUint32(lead[:], uint32(plen))
		putStamp(lead[h:], id, seq)
		i = copy(dst, lead[from:leadLen])
	}
	if i < n {
		fillPattern(dst[i:], patternSeed(id, seq), from+i-h-stampSize)
	}
	return n
}

// fillPattern writes the pattern from pattern offset q (payload offset
// q+stampSize) on. Word j of the pattern is h + j*golden, little-endian.
func fillPattern(dst []byte, h uint64, q int) {
	j := uint64(q >> 3)
	if r := q & 7; r != 0 {
		w := h + j*golden
		k := 0
		for ; r+k < 8 && k < len(dst); k++ {
			dst[k] = byte(w >> (8 * (r + k)))
		}
		dst = dst[k:]
		j++
	}
	w := h + j*golden
	for len(dst) >= 32 { // unrolled, as checkPattern
		w1 := w + golden
		w2 := w1 + golden
		w3 := w2 + golden
		binary.LittleEndian.PutUint64(dst, w)
		binary.LittleEndian.PutUint64(dst[8:], w1)
		binary.LittleEndian.PutUint64(dst[16:], w2)
		binary.LittleEndian.PutUint64(dst[24:], w3)
		dst = dst[32:]
		w = w3 + golden
	}
	for len(dst) >= 8 {
		binary.LittleEndian.PutUint64(dst, w)
		dst = dst[8:]
		w += golden
	}
	for k := range dst {
		dst[k] = byte(w >> (8 * k))
	}
}

// checkPattern reports whether b equals the pattern from offset q on.
func checkPattern(b []byte, h uint64, q int) bool {
	j := uint64(q >> 3)
	if r := q & 7; r != 0 {
		w := h + j*golden
		k := 0
		for ; r+k < 8 && k < len(b); k++ {
			if b[k] != byte(w>>(8*(r+k))) {
				return false
			}
		}
		b = b[k:]
		j++
	}
	w := h + j*golden
	for len(b) >= 32 { // unrolled: this loop is the receive path's inner loop for big frames
		w1 := w + golden
		w2 := w1 + golden
		w3 := w2 + golden
		if binary.LittleEndian.Uint64(b) != w ||
			binary.LittleEndian.Uint64(b[8:]) != w1 ||
			binary.LittleEndian.Uint64(b[16:]) != w2 ||
			binary.LittleEndian.Uint64(b[24:]) != w3 {
			return false
		}
		b = b[32:]
		w = w3 + golden
	}
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != w {
			return false
		}
		b = b[8:]
		w += golden
	}
	for k := range b {
		if b[k] != byte(w>>(8*k)) {
			return false
		}
	}
	return true
}

// stampMatches reports whether got, the first min(plen, stampSize) bytes of
// a payload, are the stamp of (id, seq).
func stampMatches(got []byte, id uint32, seq uint64) bool {
	if len(got) == stampSize { // the common case, without a call to memequal
		return binary.LittleEndian.Uint32(got) == id && binary.LittleEndian.Uint64(got[4:]) == seq
	}
	var st [stampSize]byte
	putStamp(st[:], id, seq)
	return string(got) == string(st[:len(got)])
}
