// Package frame encodes and decodes the wire format: a 4-byte unsigned
// little-endian payload length, then the payload. Everything here is a pure
// function over byte slices, so it can be fuzzed on its own.
package frame

import (
	"encoding/binary"
	"errors"
)

// HeaderSize is the size of the length prefix.
const HeaderSize = 4

// MaxPayload is the largest length the header can express.
const MaxPayload = 1<<32 - 1

// ErrTooLarge reports a header announcing more than the allowed maximum.
var ErrTooLarge = errors.New("frame: announced length exceeds the maximum")

// Next looks for one complete frame at the start of buf.
//
// It returns the payload (a sub-slice of buf) and the number of bytes the
// frame occupies. When buf holds less than a whole frame it returns n == 0
// and need, the total size of the frame if the header is complete, or
// HeaderSize if it is not. A header announcing more than max returns
// ErrTooLarge before any arithmetic on the announced length.
func Next(buf []byte, max uint32) (payload []byte, n int, need int, err error) {
	if len(buf) < HeaderSize {
		return nil, 0, HeaderSize, nil
	}
	size := binary.LittleEndian.Uint32(buf)
	if size > max {
		return nil, 0, 0, ErrTooLarge
	}
	// size <= max <= MaxPayload, so the sum fits an int on 64-bit
	// platforms; on 32-bit ones the caller's max keeps it in range.
	total := HeaderSize + int(size)
	if len(buf) < total {
		return nil, 0, total, nil
	}
	return buf[HeaderSize:total], total, total, nil
}

// Length returns the payload length the header at the start of buf
// announces. buf must hold at least HeaderSize bytes.
func Length(buf []byte) uint32 { return binary.LittleEndian.Uint32(buf) }

// PutHeader writes the header for a payload of length n into dst[:4].
func PutHeader(dst []byte, n int) { binary.LittleEndian.PutUint32(dst, uint32(n)) }

// Append appends a frame carrying payload to dst.
func Append(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}
