package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestNext(t *testing.T) {
	hello := Append(nil, []byte("hello"))
	tests := []struct {
		name        string
		buf         []byte
		max         uint32
		wantPayload []byte
		wantN       int
		wantNeed    int
		wantErr     error
	}{
		{name: "empty buffer", buf: nil, max: 10, wantNeed: HeaderSize},
		{name: "partial header", buf: []byte{5, 0}, max: 10, wantNeed: HeaderSize},
		{name: "header only", buf: hello[:4], max: 10, wantNeed: 9},
		{name: "partial payload", buf: hello[:7], max: 10, wantNeed: 9},
		{name: "complete", buf: hello, max: 10, wantPayload: []byte("hello"), wantN: 9, wantNeed: 9},
		{name: "complete with trailing bytes", buf: append(bytes.Clone(hello), 1, 2), max: 10, wantPayload: []byte("hello"), wantN: 9, wantNeed: 9},
		{name: "zero length", buf: []byte{0, 0, 0, 0}, max: 10, wantPayload: []byte{}, wantN: 4, wantNeed: 4},
		{name: "exactly max", buf: Append(nil, make([]byte, 10)), max: 10, wantPayload: make([]byte, 10), wantN: 14, wantNeed: 14},
		{name: "one over max", buf: []byte{11, 0, 0, 0}, max: 10, wantErr: ErrTooLarge},
		{name: "largest length", buf: []byte{0xff, 0xff, 0xff, 0xff}, max: 1 << 20, wantErr: ErrTooLarge},
		{name: "little endian", buf: []byte{0, 1, 0, 0}, max: 1 << 20, wantNeed: 4 + 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, n, need, err := Next(tt.buf, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN || need != tt.wantNeed {
				t.Fatalf("n, need = %d, %d; want %d, %d", n, need, tt.wantN, tt.wantNeed)
			}
			if !bytes.Equal(payload, tt.wantPayload) || (payload == nil) != (tt.wantPayload == nil) {
				t.Fatalf("payload = %q, want %q", payload, tt.wantPayload)
			}
		})
	}
}

// decodeAll decodes a stream fed in chunks of the given sizes, carrying
// the unfinished tail the way the loop does.
func decodeAll(t testing.TB, stream []byte, chunks []int, max uint32) ([][]byte, error) {
	var out [][]byte
	var tail []byte
	for len(stream) > 0 {
		k := len(stream)
		if len(chunks) > 0 {
			k = min(max1(chunks[0]), len(stream))
			chunks = chunks[1:]
		}
		tail = append(tail, stream[:k]...)
		stream = stream[k:]
		for {
			payload, n, _, err := Next(tail, max)
			if err != nil {
				return out, err
			}
			if n == 0 {
				break
			}
			out = append(out, bytes.Clone(payload))
			tail = tail[n:]
		}
		tail = bytes.Clone(tail)
	}
	if len(tail) != 0 {
		t.Fatalf("%d bytes left undecoded", len(tail))
	}
	return out, nil
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

func TestSplitAnywhere(t *testing.T) {
	payloads := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("xyz"), 100), []byte("end")}
	var stream []byte
	for _, p := range payloads {
		stream = Append(stream, p)
	}
	for chunk := 1; chunk <= len(stream); chunk++ {
		chunks := make([]int, len(stream))
		for i := range chunks {
			chunks[i] = chunk
		}
		got, err := decodeAll(t, stream, chunks, 1000)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if len(got) != len(payloads) {
			t.Fatalf("chunk %d: %d frames, want %d", chunk, len(got), len(payloads))
		}
		for i := range got {
			if !bytes.Equal(got[i], payloads[i]) {
				t.Fatalf("chunk %d: frame %d = %q, want %q", chunk, i, got[i], payloads[i])
			}
		}
	}
}

func TestAppendAndPutHeader(t *testing.T) {
	f := Append([]byte{9}, []byte("abc"))
	if !bytes.Equal(f, []byte{9, 3, 0, 0, 0, 'a', 'b', 'c'}) {
		t.Fatalf("Append = %v", f)
	}
	var h [4]byte
	PutHeader(h[:], 0x01020304)
	if binary.LittleEndian.Uint32(h[:]) != 0x01020304 || Length(h[:]) != 0x01020304 {
		t.Fatalf("PutHeader/Length disagree: %v", h)
	}
}

// FuzzNext checks that no input panics the decoder, that a frame is never
// reported beyond the buffer or the maximum, and that decoding does not
// depend on how the stream is split.
func FuzzNext(f *testing.F) {
	f.Add([]byte{5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'}, uint32(16), uint8(3))
	f.Add([]byte{0, 0, 0, 0}, uint32(0), uint8(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1}, uint32(1<<20), uint8(2))
	f.Fuzz(func(t *testing.T, buf []byte, max uint32, chunk uint8) {
		max %= 1 << 16
		payload, n, need, err := Next(buf, max)
		switch {
		case err != nil:
			if len(buf) < HeaderSize || binary.LittleEndian.Uint32(buf) <= max {
				t.Fatalf("error %v for an acceptable header", err)
			}
		case n > 0:
			if n > len(buf) || n != HeaderSize+len(payload) || uint32(len(payload)) > max || need != n {
				t.Fatalf("bad frame: n=%d need=%d len(payload)=%d len(buf)=%d", n, need, len(payload), len(buf))
			}
		default:
			if need <= len(buf) && len(buf) >= HeaderSize {
				t.Fatalf("incomplete with need=%d but %d bytes buffered", need, len(buf))
			}
		}
		// Splitting the stream must not change what is decoded.
		whole, errWhole := decodeAllLenient(buf, 0, max)
		split, errSplit := decodeAllLenient(buf, int(chunk%16)+1, max)
		if (errWhole == nil) != (errSplit == nil) || len(whole) != len(split) {
			t.Fatalf("split by %d: %d frames (err %v), whole: %d frames (err %v)", chunk%16+1, len(split), errSplit, len(whole), errWhole)
		}
		for i := range whole {
			if !bytes.Equal(whole[i], split[i]) {
				t.Fatalf("frame %d differs when split", i)
			}
		}
	})
}

func decodeAllLenient(stream []byte, chunk int, max uint32) ([][]byte, error) {
	var out [][]byte
	var tail []byte
	for len(stream) > 0 {
		k := len(stream)
		if chunk > 0 {
			k = min(chunk, len(stream))
		}
		tail = append(tail, stream[:k]...)
		stream = stream[k:]
		for {
			payload, n, _, err := Next(tail, max)
			if err != nil {
				return out, err
			}
			if n == 0 {
				break
			}
			out = append(out, payload)
			tail = tail[n:]
		}
	}
	return out, nil
}

func BenchmarkNext(b *testing.B) {
	var stream []byte
	for range 64 {
		stream = Append(stream, make([]byte, 64))
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		buf := stream
		for {
			_, n, _, _ := Next(buf, 1<<20)
			if n == 0 {
				break
			}
			buf = buf[n:]
		}
	}
}
