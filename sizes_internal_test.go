package frameloop

import (
	"testing"
	"unsafe"
)

// An idle connection costs its state, its handle and a table slot; README
// and the S4 benchmark count on these sizes, which are Go size classes.
func TestIdleConnectionStructSizes(t *testing.T) {
	if n := unsafe.Sizeof(connState{}); n > 96 {
		t.Errorf("connState is %d bytes, want at most 96", n)
	}
	if n := unsafe.Sizeof(Conn{}); n > 48 {
		t.Errorf("Conn is %d bytes, want at most 48", n)
	}
}
