//go:build !race

// Under the race detector sync.Pool drops a share of Puts on purpose, so
// allocation counts mean nothing there: built without it only.

package bufpool

import "testing"

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	Put(Get(4096))
	allocs := testing.AllocsPerRun(1000, func() { Put(Get(4096)) })
	if allocs > 0 {
		t.Fatalf("Get/Put allocates %.1f times per call", allocs)
	}
}
