package frameloop

import (
	"testing"

	"github.com/frameloop/frameloop/internal/poller"
)

// newBenchLoop returns a loop with one open connection that is never
// flushed: the benchmarks below measure the user-space work per frame —
// decoding, the handler's Write, queueing — without system calls.
func newBenchLoop(b *testing.B) (*loop, *connState) {
	b.Helper()
	s, err := New(EchoHandler{}, Config{Addr: "127.0.0.1:0", Loops: 1})
	if err != nil {
		b.Fatal(err)
	}
	p, err := poller.New(poller.Default())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	l := newLoop(s, 0, p)
	st := l.newState()
	st.gen = l.nextGen()
	st.fd, st.phase = -1, phaseOpen
	st.conn = &Conn{st: st, gen: st.gen}
	return l, st
}

// BenchmarkDecodeAndQueue measures decoding a read of 32 pipelined 64-byte
// frames and queueing their echoes, per frame.
func BenchmarkDecodeAndQueue(b *testing.B) {
	l, st := newBenchLoop(b)
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
