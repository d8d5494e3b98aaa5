package frameloop

import (
	"testing"
	"unsafe"
)

// An idle connection costs its state, its handle and a table slot; README
// and the S4 benchmark count on these sizes. States are allocated in slabs
// (lifecycle.go), so they cost their size; handles are allocated one by
// one, and 48 bytes is a Go size class.
func TestIdleConnectionStructSizes(t *testing.T) {
	if n := unsafe.Sizeof(connState{}); n > 112 {
		t.Errorf("connState is %d bytes, want at most 112", n)
	}
	if n := unsafe.Sizeof(Conn{}); n > 48 {
		t.Errorf("Conn is %d bytes, want at most 48", n)
	}
}
