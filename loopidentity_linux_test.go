package frameloop

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopIdentity backs a design choice (README, "Other
// goroutines"): asking the kernel which thread runs the caller, to tell
// the loop's goroutine from another, costs far more than the lock every
// Write takes instead.
func BenchmarkLoopIdentity(b *testing.B) {
	b.Run("gettid", func(b *testing.B) {
		for b.Loop() {
			_ = unix.Gettid()
		}
	})
	b.Run("uncontended-lock", func(b *testing.B) {
		var mu sync.Mutex
		for b.Loop() {
			mu.Lock()
			mu.Unlock()
		}
	})
}
