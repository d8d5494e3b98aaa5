package tlslayer

import (
	"testing"

	"github.com/frameloop/frameloop/internal/testkit"
)

// getPKI returns the tests' certificates (internal/testkit): a CA, a
// server and a client certificate it signed, and a self-signed client
// certificate nobody trusts, generated in memory.
func getPKI(tb testing.TB) *testkit.PKI { return testkit.TestPKI(tb) }
