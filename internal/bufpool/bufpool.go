// Package bufpool pools byte buffers in size classes, so that a connection
// holds a buffer only while it has bytes in flight and the steady state
// allocates nothing.
//
// Classes step by an eighth of a power of two (512, 576, 640, ... 1024,
// 1152, ...), so a buffer sized to a frame wastes at most 12.5 % of it: a
// 1 MiB frame takes 1 MiB plus its header's class, not the 2 MiB a
// power-of-two class would round it to.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 9  // 512 B, the smallest class
	maxShift = 24 // 16 MiB, the largest pooled class; larger buffers are not pooled
	// steps is the number of classes per doubling: an eighth of a power
	// of two between neighbours bounds the waste to 12.5 %.
	stepShift = 3
	steps     = 1 << stepShift
)

// Buf is a pooled buffer. Next lets a holder chain buffers into a queue
// without allocating; it must be nil when the Buf is put back.
type Buf struct {
	B    []byte
	Next *Buf
}

var pools [(maxShift-minShift)*steps + 1]sync.Pool

// class returns the index and size of the smallest class holding n
// bytes; ok is false when n is above the largest class.
func class(n int) (idx, size int, ok bool) {
	if n <= 1<<minShift {
		return 0, 1 << minShift, true
	}
	// 2^k < n <= 2^(k+1); the classes in between step by 2^(k-3).
	k := bits.Len(uint(n-1)) - 1
	if k >= maxShift {
		return 0, 0, false
	}
	step := 1 << (k - stepShift)
	j := (n - 1<<k + step - 1) >> (k - stepShift) // 1..steps
	return (k-minShift)*steps + j, 1<<k + j*step, true
}

// ClassSize is the capacity Get(n) returns.
func ClassSize(n int) int {
	if _, size, ok := class(n); ok {
		return size
	}
	return n
}

// Get returns an empty buffer with room for at least n bytes.
func Get(n int) *Buf {
	idx, size, ok := class(n)
	if !ok {
		return &Buf{B: make([]byte, 0, n)}
	}
	if b, _ := pools[idx].Get().(*Buf); b != nil {
		return b
	}
	return &Buf{B: make([]byte, 0, size)}
}

// Put returns b to its class. Buffers of a foreign size are left to the
// garbage collector.
func Put(b *Buf) {
	idx, size, ok := class(cap(b.B))
	if !ok || size != cap(b.B) {
		return
	}
	b.B = b.B[:0]
	b.Next = nil
	pools[idx].Put(b)
}
