//go:build !race

// Allocation counts mean nothing under the race detector, which allocates
// on its own: built without it (README's test command runs them so).

package tlslayer

import (
	"testing"
)

// allocRuns is how many calls AllocsPerRun averages over (it makes one
// more, as a warm-up).
const allocRuns = 200

// Steady-state Decrypt of one small record and Encrypt of one small
// message, after the handshake, with buffers reused. The counts are
// logged; crypto/tls's share is explained in the package documentation.
// They are asserted against what crypto/tls 1.26 is known to do, so that
// a regression in this package (or a change in crypto/tls) shows.
func TestAllocateSteadyState(t *testing.T) {
	p := getPKI(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			pr := mustPair(t, p.ServerConfig(false), p.ClientConfig(v.v))
			pr.echo(t, []byte("warm up"))
			pr.s.Release()

			recs := records(t, pr, allocRuns+1, 64)
			plain := make([]byte, 1024)
			i := 0
			dec := testing.AllocsPerRun(allocRuns, func() {
				n, _, err := pr.s.Decrypt(recs[i], plain)
				if n != 64 || err != nil {
					t.Fatalf("Decrypt: %d, %v", n, err)
				}
				i++
			})

			msg := make([]byte, 64)
			dst := make([]byte, 0, 1024)
			enc := testing.AllocsPerRun(allocRuns, func() {
				var err error
				dst, err = pr.s.Encrypt(dst[:0], msg)
				if err != nil || len(dst) == 0 {
					t.Fatal(err)
				}
			})
			t.Logf("%s: Decrypt of one 64-byte record: %.2f allocs; Encrypt of 64 bytes: %.2f allocs", v.name, dec, enc)
			if dec > decryptAllocs || enc > 0 {
				t.Errorf("allocations: Decrypt %.2f (want <= %d), Encrypt %.2f (want 0)", dec, decryptAllocs, enc)
			}
		})
	}
}

// decryptAllocs is what crypto/tls's read path allocates per record: the
// 24-byte atLeastReader that readFromUntil (conn.go:837) passes to
// bytes.Buffer.ReadFrom as an io.Reader, which makes it escape. Nothing in
// the API avoids it: readFromUntil runs for every record whose header is
// not already in c.rawInput. (Before the shim handed out one record at a
// time, Decrypt made a second Read to find out there was nothing left, and
// paid a second one.)
const decryptAllocs = 1
