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

func TestClassSizes(t *testing.T) {
	tests := []struct{ n, want int }{
		{0, 512}, {512, 512}, {513, 576}, {576, 576}, {577, 640}, {1023, 1024}, {1024, 1024},
		{1025, 1152}, {65536, 65536}, {65537, 73728}, {1 << 20, 1 << 20}, {1<<20 + 4, 1<<20 + 1<<17},
		{1 << 24, 1 << 24}, {1<<24 + 1, 1<<24 + 1},
	}
	for _, tt := range tests {
		if got := ClassSize(tt.n); got != tt.want {
			t.Errorf("ClassSize(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

// A buffer sized to a frame wastes at most an eighth of it, and classes
// grow with the size asked for.
func TestClassWasteIsAtMostAnEighth(t *testing.T) {
	prev := 0
	for n := 1; n <= 1<<24; n += 1 + n/97 {
		c := ClassSize(n)
		if c < n || (n > 512 && float64(c-n) > float64(n)/8) {
			t.Fatalf("ClassSize(%d) = %d: wastes %d bytes", n, c, c-n)
		}
		if c < prev {
			t.Fatalf("ClassSize(%d) = %d, smaller than the class of a smaller size (%d)", n, c, prev)
		}
		prev = c
		if idx, size, _ := class(c); size != c || idx < 0 || idx >= len(pools) {
			t.Fatalf("class(%d) = %d, %d: a class size must be its own class", c, idx, size)
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
