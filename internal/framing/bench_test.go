package framing_test

import (
	"encoding/binary"
	"testing"

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

// baselineNext and baselineAppend are the engine's decoder and encoder
// from before framing was configurable (internal/frame, now gone): one
// fixed 4-byte little-endian header, inlined at the call site. The
// benchmarks keep them as the yardstick of the default path.
func baselineNext(buf []byte, max uint32) (payload []byte, n int, need int, err error) {
	if len(buf) < 4 {
		return nil, 0, 4, nil
	}
	size := binary.LittleEndian.Uint32(buf)
	if size > max {
		return nil, 0, 0, framing.ErrTooLarge
	}
	total := 4 + int(size)
	if len(buf) < total {
		return nil, 0, total, nil
	}
	return buf[4:total], total, total, nil
}

func baselineAppend(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

//go:noinline
func frameNextNoinline(buf []byte, max uint32) ([]byte, int, int, error) {
	return baselineNext(buf, max)
}

func reportPerFrame(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchFrames, "ns/frame")
}

// BenchmarkNext decodes a buffer of small frames, the way the loop walks a
// read buffer. baseline-frame-u32le is the old fixed decoder on the same
// bytes as u32le.
func BenchmarkNext(b *testing.B) {
	b.Run("baseline-frame-u32le", func(b *testing.B) {
		f := mustNew(b, framing.Spec{}, benchMax)
		stream := benchStream(b, f)
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			buf := stream
			for len(buf) > 0 {
				payload, n, _, err := baselineNext(buf, benchMax)
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
				dst = baselineAppend(dst, body)
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
