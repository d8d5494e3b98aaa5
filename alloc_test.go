//go:build !race

// Allocation counts mean nothing under the race detector, which allocates
// on its own and makes sync.Pool drop items on purpose: these tests are
// built without it (README's test command runs them a second time so).

package frameloop_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

// startEcho runs an echo server with one loop on a free loopback port and
// stops it when the test ends.
func startEcho(tb testing.TB, backend string, f frameloop.Framing) string {
	tb.Helper()
	cfg := frameloop.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Loops = 1
	cfg.Backend = backend
	cfg.Framing = f
	srv, err := frameloop.New(frameloop.EchoHandler{}, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return testkit.Serve(tb, srv, frameloop.ErrServerClosed, 5*time.Second, nil)
}

// echoClient round-trips batches of frames; it allocates nothing itself,
// so that the process's allocation count is the server's.
type echoClient struct {
	c     net.Conn
	batch []byte
	reply []byte
}

func newEchoClient(tb testing.TB, addr string, f frameloop.Framing, frames, size int) *echoClient {
	ec := &echoClient{c: testkit.Dial(tb, "tcp", addr, ioTimeout)}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	format, err := framing.New(f, framing.MaxBody)
	if err != nil {
		tb.Fatal(err)
	}
	for range frames {
		if ec.batch, err = format.Append(ec.batch, nil, payload); err != nil {
			tb.Fatal(err)
		}
	}
	ec.reply = make([]byte, len(ec.batch))
	return ec
}

func (ec *echoClient) roundTrip() error {
	if _, err := ec.c.Write(ec.batch); err != nil {
		return err
	}
	_, err := io.ReadFull(ec.c, ec.reply)
	return err
}

// TestEchoPathDoesNotAllocate shows the steady-state echo path allocates
// nothing per frame, for every framing preset: reading, decoding, the
// handler's Write, queueing and the flush all reuse pooled or per-loop
// memory.
func TestEchoPathDoesNotAllocate(t *testing.T) {
	for _, backend := range poller.Backends() {
		for _, preset := range frameloop.FramingPresets() {
			f, err := frameloop.ParseFraming(preset)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name         string
				frames, size int
			}{
				{name: "one small frame", frames: 1, size: 64},
				{name: "pipelined small frames", frames: 32, size: 64},
				{name: "larger than the read buffer", frames: 1, size: 200 << 10},
			} {
				if (f.Length == 1 || f.Length == 2) && tc.size >= 1<<(8*f.Length) {
					continue // a body the length field cannot express
				}
				t.Run(backend+"/"+preset+"/"+tc.name, func(t *testing.T) {
					ec := newEchoClient(t, startEcho(t, backend, f), f, tc.frames, tc.size)
					for range 100 { // warm the pools
						if err := ec.roundTrip(); err != nil {
							t.Fatal(err)
						}
					}
					var err error
					allocs := testing.AllocsPerRun(500, func() {
						if e := ec.roundTrip(); e != nil {
							err = e
						}
					})
					if err != nil {
						t.Fatal(err)
					}
					if perFrame := allocs / float64(tc.frames); perFrame > 0 {
						t.Fatalf("%.2f allocations per frame, want 0", perFrame)
					}
				})
			}
		}
	}
}

// BenchmarkEcho measures a pipelined round trip over loopback, server and
// client in one process; allocations are reported per round trip.
func BenchmarkEcho(b *testing.B) {
	for _, tc := range []struct {
		name         string
		frames, size int
	}{
		{name: "1x64B", frames: 1, size: 64},
		{name: "32x64B", frames: 32, size: 64},
		{name: "8x4000B", frames: 8, size: 4000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ec := newEchoClient(b, startEcho(b, poller.Default(), frameloop.Framing{}), frameloop.Framing{}, tc.frames, tc.size)
			b.SetBytes(int64(len(ec.batch)))
			b.ReportAllocs()
			for b.Loop() {
				if err := ec.roundTrip(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTLSEchoAllocatesPerRecordNotPerFrame shows the TLS echo path's
// allocations: none per frame; per record, the one crypto/tls makes when
// it reads a record (an atLeastReader passed as an io.Reader escapes,
// conn.go:837 in Go 1.26; see internal/tlslayer). The client in this
// process reads with crypto/tls too, so a round trip — one record each
// way — costs two allocations however many frames it carries.
func TestTLSEchoAllocatesPerRecordNotPerFrame(t *testing.T) {
	pki := testkit.TestPKI(t)
	for _, backend := range poller.Backends() {
		for _, frames := range []int{1, 32} {
			t.Run(fmt.Sprintf("%s/%d-frames", backend, frames), func(t *testing.T) {
				cfg := frameloop.DefaultConfig()
				cfg.Addr, cfg.Loops, cfg.Backend = "127.0.0.1:0", 1, backend
				cfg.TLS = pki.ServerConfig(false)
				srv, err := frameloop.New(frameloop.EchoHandler{}, cfg)
				if err != nil {
					t.Fatal(err)
				}
				addr := testkit.Serve(t, srv, frameloop.ErrServerClosed, 5*time.Second, nil)
				c, err := tls.Dial("tcp", addr, pki.ClientConfig(tls.VersionTLS13))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				var batch []byte
				for range frames {
					batch = testkit.AppendFrame(batch, make([]byte, 64))
				}
				reply := make([]byte, len(batch))
				trip := func() error {
					if _, err := c.Write(batch); err != nil {
						return err
					}
					_, err := io.ReadFull(c, reply)
					return err
				}
				for range 100 {
					if err := trip(); err != nil {
						t.Fatal(err)
					}
				}
				var terr error
				allocs := testing.AllocsPerRun(500, func() {
					if err := trip(); err != nil {
						terr = err
					}
				})
				if terr != nil {
					t.Fatal(terr)
				}
				t.Logf("%.2f allocations per round trip of %d frames (%.3f per frame)", allocs, frames, allocs/float64(frames))
				if allocs > 2 {
					t.Fatalf("%.2f allocations per round trip: want at most the 2 crypto/tls makes reading a record, one on each side", allocs)
				}
			})
		}
	}
}
