package framing_test

import (
	"testing"

	"github.com/frameloop/frameloop/internal/frame"
	"github.com/frameloop/frameloop/internal/framing"
)

const (
	benchFrames = 1024
	benchBody   = 64
	benchMax    = 1 << 20
)

var sink int

// benchStream is benchFrames frames of benchBody bytes back to back.
func benchStream(b *testing.B, f *framing.Format) []byte {
	body := make([]byte, benchBody)
	var buf []byte
	for range benchFrames {
		var err error
		if buf, err = f.Append(buf, nil, body); err != nil {
			b.Fatal(err)
		}
	}
	return buf
}

//go:noinline
func frameNextNoinline(buf []byte, max uint32) ([]byte, int, int, error) { return frame.Next(buf, max) }

func reportPerFrame(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchFrames, "ns/frame")
}

// BenchmarkNext decodes a buffer of small frames, the way the loop walks a
// read buffer. baseline-frame-u32le is internal/frame.Next on the same
// bytes as u32le.
func BenchmarkNext(b *testing.B) {
	b.Run("baseline-frame-u32le", func(b *testing.B) {
		f := mustNew(b, framing.Spec{}, benchMax)
		stream := benchStream(b, f)
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			buf := stream
			for len(buf) > 0 {
				payload, n, _, err := frame.Next(buf, benchMax)
				if n == 0 || err != nil {
					b.Fatal("short frame")
				}
				sink += len(payload)
				buf = buf[n:]
			}
		}
		reportPerFrame(b)
	})
	// The same, not inlined: what a call costs, since Format.Next cannot
	// be inlined.
	b.Run("baseline-frame-u32le-noinline", func(b *testing.B) {
		f := mustNew(b, framing.Spec{}, benchMax)
		stream := benchStream(b, f)
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			buf := stream
			for len(buf) > 0 {
				payload, n, _, err := frameNextNoinline(buf, benchMax)
				if n == 0 || err != nil {
					b.Fatal("short frame")
				}
				sink += len(payload)
				buf = buf[n:]
			}
		}
		reportPerFrame(b)
	})
	for _, name := range framing.Presets() {
		b.Run(name, func(b *testing.B) {
			s, _ := framing.ParseSpec(name)
			f := mustNew(b, s, benchMax)
			stream := benchStream(b, f)
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				buf := stream
				for len(buf) > 0 {
					n, h, _, err := f.Next(buf)
					if n == 0 || err != nil {
						b.Fatal("short frame")
					}
					sink += n - h
					buf = buf[n:]
				}
			}
			reportPerFrame(b)
		})
	}
}

// BenchmarkAppend encodes the same frames into a reused buffer.
func BenchmarkAppend(b *testing.B) {
	body := make([]byte, benchBody)
	dst := make([]byte, 0, benchFrames*(benchBody+16))
	b.Run("baseline-frame-u32le", func(b *testing.B) {
		for b.Loop() {
			dst = dst[:0]
			for range benchFrames {
				dst = frame.Append(dst, body)
			}
		}
		reportPerFrame(b)
	})
	for _, name := range framing.Presets() {
		b.Run(name, func(b *testing.B) {
			s, _ := framing.ParseSpec(name)
			f := mustNew(b, s, benchMax)
			for b.Loop() {
				dst = dst[:0]
				for range benchFrames {
					dst, _ = f.Append(dst, nil, body)
				}
			}
			reportPerFrame(b)
		})
	}
}
