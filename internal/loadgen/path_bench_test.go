package loadgen

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkFramePath is the generator's own cost per frame, kernel
// included: generate a batch of 32 frames of 64 bytes, write it, read it
// back through a socket pair as if echoed, check it and record latencies.
func BenchmarkFramePath(b *testing.B) {
	benchPath(b, "u32le", readFd, writeFd)
}

// BenchmarkFramePathSyscall is the same with x/sys's ordinary calls, which
// tell the Go scheduler about each one.
func BenchmarkFramePathSyscall(b *testing.B) {
	benchPath(b, "u32le", unix.Read, unix.Write)
}

// BenchmarkFormatPath is BenchmarkFramePath in other formats, which take
// the general path (u32le, listed for comparison, does not).
func BenchmarkFormatPath(b *testing.B) {
	for _, spec := range []string{"u32le", "u32be", "varint", "mqtt", "grpc"} {
		b.Run(spec, func(b *testing.B) { benchPath(b, spec, readFd, writeFd) })
	}
}

func benchPath(b *testing.B, spec string, read, write func(int, []byte) (int, error)) {
	fds, err := socketPair()
	if err != nil {
		b.Skip(err)
	}
	defer closeAll(fds[:])
	w, c := receiver(mustWire(b, spec), 1, newSizes(64, 64), 0)
	w.wbuf = make([]byte, writeBufSize)
	w.rbuf = make([]byte, readBufSize)
	w.pipeline = 32
	b.ReportAllocs()
	for b.Loop() {
		n := w.fill(c, c.expected+w.pipeline)
		m, err := write(fds[0], w.wbuf[:n])
		if err != nil || m != n {
			b.Fatalf("write: %d of %d, %v", m, n, err)
		}
		w.advance(c, m, now())
		for got := 0; got < m; {
			k, err := read(fds[1], w.rbuf)
			if err != nil {
				b.Fatal(err)
			}
			w.consume(c, w.rbuf[:k], now())
			got += k
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(w.st.replies), "ns/frame")
	if w.st.mismatches != 0 {
		b.Fatal("mismatches")
	}
}

// BenchmarkFrameWork is the generator's user-space work per frame alone:
// generate, account, check, record; no system call.
func BenchmarkFrameWork(b *testing.B) {
	for _, size := range []int{64, 4096, 1 << 20} {
		b.Run(itoa(size)+"B", func(b *testing.B) { benchWork(b, "u32le", size) })
	}
}

// BenchmarkFormatWork is BenchmarkFrameWork/64B in other formats.
func BenchmarkFormatWork(b *testing.B) {
	for _, spec := range []string{"u32le", "u32be", "varint", "mqtt", "grpc"} {
		b.Run(spec, func(b *testing.B) { benchWork(b, spec, 64) })
	}
}

func benchWork(b *testing.B, spec string, size int) {
	x := mustWire(b, spec)
	w, c := receiver(x, 1, newSizes(size, size), 0)
	w.wbuf = make([]byte, writeBufSize)
	w.pipeline = 32
	b.ReportAllocs()
	for b.Loop() { // one batch of 32 frames, a write buffer at a time
		limit := c.expected + w.pipeline
		for c.next < limit {
			n := w.fill(c, limit)
			w.advance(c, n, now())
			w.consume(c, w.wbuf[:n], now())
		}
	}
	frames := float64(w.st.replies)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/frames, "ns/frame")
	b.ReportMetric(frames*float64(size+x.headerLen(size))/b.Elapsed().Seconds()/1e6, "MB/s")
	if w.st.mismatches != 0 {
		b.Fatal("mismatches")
	}
}
