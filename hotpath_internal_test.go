package frameloop

import (
	"testing"

	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/poller"
)

// newDetachedLoop returns a loop of a server for h and cfg with one open
// connection that is never flushed and has no socket: tests and
// benchmarks drive its read path by hand (consume) and measure the
// user-space work per frame — decoding, the handler, queueing — without
// system calls.
func newDetachedLoop(tb testing.TB, h Handler, cfg Config) (*loop, *connState) {
	tb.Helper()
	cfg.Addr, cfg.Loops = "127.0.0.1:0", 1
	s, err := New(h, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := poller.New(poller.Default())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	l := newLoop(s, 0, p)
	st := l.newState()
	st.gen = l.nextGen()
	st.fd, st.phase = -1, phaseOpen
	st.conn = &Conn{st: st, gen: st.gen}
	return l, st
}

func newBenchLoop(b *testing.B) (*loop, *connState) {
	return newDetachedLoop(b, EchoHandler{}, Config{})
}

// BenchmarkDecodeAndQueue measures decoding a read of 32 pipelined 64-byte
// frames and queueing their echoes, per frame, for every framing preset:
// "u32le" is the default path.
func BenchmarkDecodeAndQueue(b *testing.B) {
	for _, name := range framing.Presets() {
		b.Run(name, func(b *testing.B) {
			f, err := framing.ParseSpec(name)
			if err != nil {
				b.Fatal(err)
			}
			l, st := newDetachedLoop(b, EchoHandler{}, Config{Framing: f})
			var batch []byte
			for range 32 {
				batch, _ = l.format.Append(batch, nil, make([]byte, 64))
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				l.consume(st, batch)
				l.outMu.Lock()
				st.releaseOutput()
				l.outMu.Unlock()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/frame")
		})
	}
}

// BenchmarkConnWrite measures one Write of a 64-byte payload.
func BenchmarkConnWrite(b *testing.B) {
	l, st := newBenchLoop(b)
	payload := make([]byte, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		st.conn.Write(payload)
		if i++; i%1000 == 0 {
			l.outMu.Lock()
			st.releaseOutput()
			l.outMu.Unlock()
		}
	}
}

// BenchmarkReplySlot measures an ordered asynchronous reply — Reserve,
// then fill with a 64-byte body — against BenchmarkConnWrite's plain
// Write of the same body.
func BenchmarkReplySlot(b *testing.B) {
	l, st := newBenchLoop(b)
	payload := make([]byte, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r, err := st.conn.Reserve()
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Write(payload); err != nil {
			b.Fatal(err)
		}
		if i++; i%1000 == 0 {
			l.outMu.Lock()
			st.releaseOutput()
			l.outMu.Unlock()
		}
	}
}
