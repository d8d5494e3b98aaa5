package testkit

import (
	"fmt"
	"math/rand/v2"
	"sync"
)

// Pattern returns n pseudo-random bytes, the same for the same seed and
// different for different seeds: a window, starting where seed says, over
// a fixed random block (copying is cheap even under -race; generating
// tens of MB byte by byte is not).
func Pattern(n int, seed uint64) []byte {
	src := PatternBlock()
	b := make([]byte, n)
	for i := int((seed * 0x9E3779B97F4A7C15) % uint64(len(src))); n > 0; i = 0 {
		m := copy(b[len(b)-n:], src[i:])
		n -= m
	}
	return b
}

// PatternBlock is the block Pattern copies from, 1 MiB + 7 bytes (so that
// windows rarely line up), for callers that take windows of it without
// copying. It is shared: never write to it.
func PatternBlock() []byte { return patternBlock() }

var patternBlock = sync.OnceValue(func() []byte {
	b := make([]byte, 1<<20+7)
	rand.NewChaCha8([32]byte{'f', 'r', 'a', 'm', 'e'}).Read(b)
	return b
})

// Preview shows the start of b in hex, for failure messages.
func Preview(b []byte) string {
	if len(b) > 16 {
		return fmt.Sprintf("%x…", b[:16])
	}
	return fmt.Sprintf("%x", b)
}
