package loadgen

import (
	"bytes"
	"encoding/binary"

	"github.com/frameloop/frameloop/internal/frame"
)

// A payload starts with a stamp — the connection id (4 bytes) and the
// frame's sequence number (8 bytes), little-endian — and continues with a
// pattern derived from both. Any byte of a frame can therefore be computed
// from (id, seq, size, offset) alone: the sender regenerates what the socket
// did not take, and the receiver checks replies as they stream in, at any
// split, without a stored copy. A payload shorter than the stamp carries the
// stamp's first bytes; its length is checked too.
const stampSize = 12

// prefixSize is the frame header plus the stamp.
const prefixSize = frame.HeaderSize + stampSize

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

// putPrefix writes header and stamp of frame (id, seq, plen) into p.
func putPrefix(p *[prefixSize]byte, id uint32, seq uint64, plen int) {
	frame.PutHeader(p[:], plen)
	binary.LittleEndian.PutUint32(p[4:], id)
	binary.LittleEndian.PutUint64(p[8:], seq)
}

// fillFrame writes the bytes of frame (id, seq) carrying plen payload bytes,
// starting at byte from of its encoding (header included), into dst. It
// returns how many it wrote: all that remain of the frame, or len(dst).
func fillFrame(dst []byte, id uint32, seq uint64, plen, from int) int {
	n := min(len(dst), frame.HeaderSize+plen-from)
	if n <= 0 {
		return 0
	}
	dst = dst[:n]
	i := 0
	if preLen := frame.HeaderSize + min(plen, stampSize); from < preLen {
		var pre [prefixSize]byte
		putPrefix(&pre, id, seq, plen)
		i = copy(dst, pre[from:preLen])
	}
	if i < n {
		fillPattern(dst[i:], patternSeed(id, seq), from+i-prefixSize)
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
	var pre [prefixSize]byte
	putPrefix(&pre, id, seq, 0)
	return bytes.Equal(got, pre[frame.HeaderSize:frame.HeaderSize+len(got)])
}
