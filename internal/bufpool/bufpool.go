// Package bufpool pools byte buffers in power-of-two size classes, so that
// a connection holds a buffer only while it has bytes in flight and the
// steady state allocates nothing.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 9  // 512 B, the smallest class
	maxShift = 24 // 16 MiB, the largest pooled class; larger buffers are not pooled
)

// Buf is a pooled buffer. Next lets a holder chain buffers into a queue
// without allocating; it must be nil when the Buf is put back.
type Buf struct {
	B    []byte
	Next *Buf
}

var pools [maxShift - minShift + 1]sync.Pool

// class returns the index of the smallest class holding n bytes, or -1
// when n is above the largest class.
func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	s := bits.Len(uint(n - 1))
	if s > maxShift {
		return -1
	}
	return s - minShift
}

// ClassSize is the capacity Get(n) returns.
func ClassSize(n int) int {
	c := class(n)
	if c < 0 {
		return n
	}
	return 1 << (c + minShift)
}

// Get returns an empty buffer with room for at least n bytes.
func Get(n int) *Buf {
	c := class(n)
	if c < 0 {
		return &Buf{B: make([]byte, 0, n)}
	}
	if b, _ := pools[c].Get().(*Buf); b != nil {
		return b
	}
	return &Buf{B: make([]byte, 0, 1<<(c+minShift))}
}

// Put returns b to its class. Buffers of a foreign size are left to the
// garbage collector.
func Put(b *Buf) {
	size := cap(b.B)
	c := class(size)
	if c < 0 || 1<<(c+minShift) != size {
		return
	}
	b.B = b.B[:0]
	b.Next = nil
	pools[c].Put(b)
}
