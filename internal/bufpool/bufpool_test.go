package bufpool

import "testing"

func TestGetHasRoom(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 4096, 70000, 1 << 24, 1<<24 + 1} {
		b := Get(n)
		if cap(b.B) < n || len(b.B) != 0 || b.Next != nil {
			t.Fatalf("Get(%d): len %d cap %d", n, len(b.B), cap(b.B))
		}
		if cap(b.B) != ClassSize(n) {
			t.Fatalf("Get(%d): cap %d, ClassSize %d", n, cap(b.B), ClassSize(n))
		}
		Put(b)
	}
}

func TestClassesArePowersOfTwo(t *testing.T) {
	tests := []struct{ n, want int }{
		{0, 512}, {512, 512}, {513, 1024}, {65536, 65536}, {65537, 131072}, {1 << 24, 1 << 24}, {1<<24 + 1, 1<<24 + 1},
	}
	for _, tt := range tests {
		if got := ClassSize(tt.n); got != tt.want {
			t.Errorf("ClassSize(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestPutResetsAndIgnoresForeignSizes(t *testing.T) {
	b := Get(1000)
	b.B = append(b.B, "data"...)
	b.Next = &Buf{}
	Put(b)
	if len(b.B) != 0 || b.Next != nil {
		t.Fatal("Put did not reset the buffer")
	}
	Put(&Buf{B: make([]byte, 0, 1000)}) // not a class size: dropped, no panic
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under the race detector")
	}
	Put(Get(4096))
	allocs := testing.AllocsPerRun(1000, func() { Put(Get(4096)) })
	if allocs > 0 {
		t.Fatalf("Get/Put allocates %.1f times per call", allocs)
	}
}
