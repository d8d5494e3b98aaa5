package tlslayer

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: handshake goroutines, the test
// server's drivers and exec's pipe copiers included.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
