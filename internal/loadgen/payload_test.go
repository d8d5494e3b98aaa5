package loadgen

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/frameloop/frameloop/internal/frame"
)

var testSizes = []int{0, 1, 3, 4, 11, 12, 13, 15, 16, 17, 19, 20, 63, 64, 65, 1000, 70001}

// encode is frame (id, seq) with a payload of plen bytes, generated in one go.
func encode(id uint32, seq uint64, plen int) []byte {
	b := make([]byte, frame.HeaderSize+plen)
	if n := fillFrame(b, id, seq, plen, 0); n != len(b) {
		panic("short fill")
	}
	return b
}

func TestFrameLayout(t *testing.T) {
	b := encode(7, 0x0102030405060708, 40)
	payload, n, _, err := frame.Next(b, frame.MaxPayload)
	if err != nil || n != len(b) || len(payload) != 40 {
		t.Fatalf("not one frame of 40 bytes: n=%d len=%d err=%v", n, len(payload), err)
	}
	if id := binary.LittleEndian.Uint32(payload); id != 7 {
		t.Errorf("stamped id %d, want 7", id)
	}
	if seq := binary.LittleEndian.Uint64(payload[4:]); seq != 0x0102030405060708 {
		t.Errorf("stamped seq %#x", seq)
	}
	// The pattern differs between frames and between connections.
	if bytes.Equal(encode(7, 1, 40)[prefixSize:], encode(7, 2, 40)[prefixSize:]) ||
		bytes.Equal(encode(7, 1, 40)[prefixSize:], encode(8, 1, 40)[prefixSize:]) {
		t.Error("two frames share a pattern")
	}
	// A short payload carries the stamp's first bytes.
	if got := encode(7, 9, 3); !bytes.Equal(got, []byte{3, 0, 0, 0, 7, 0, 0}) {
		t.Errorf("3-byte frame is % x", got)
	}
}

// Generating a frame piecewise, from any offset, gives the same bytes.
func TestFillFromAnyOffset(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, plen := range testSizes {
		want := encode(3, 99, plen)
		got := make([]byte, 0, len(want))
		for from := 0; from < len(want); {
			chunk := make([]byte, 1+rng.IntN(40))
			n := fillFrame(chunk, 3, 99, plen, from)
			got = append(got, chunk[:n]...)
			from += n
		}
		if !bytes.Equal(got, want) {
			t.Errorf("size %d: piecewise fill differs", plen)
		}
		// The check agrees from any offset: every alignment, and far in.
		for _, q := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 31, 33, 1001, 40000} {
			if q+prefixSize > len(want) {
				break
			}
			if !checkPattern(want[prefixSize+q:], patternSeed(3, 99), q) {
				t.Fatalf("size %d: pattern check fails from offset %d", plen, q)
			}
		}
	}
}

func TestSizesUniform(t *testing.T) {
	s := newSizes(10, 20)
	seen := map[int]int{}
	sum := 0
	const n = 22000
	for seq := range uint64(n) {
		v := s.of(5, seq)
		if v < 10 || v > 20 {
			t.Fatalf("size %d outside 10..20", v)
		}
		if v != s.of(5, seq) {
			t.Fatal("size is not a function of (id, seq)")
		}
		seen[v]++
		sum += v
	}
	for v := 10; v <= 20; v++ {
		if seen[v] < n/11/2 {
			t.Errorf("size %d drawn %d times of %d: not uniform", v, seen[v], n)
		}
	}
	if mean := float64(sum) / n; mean < 14.5 || mean > 15.5 {
		t.Errorf("mean size %.2f, want about 15", mean)
	}
	if newSizes(64, 64).of(1, 2) != 64 {
		t.Error("fixed size")
	}
	if s := newSizes(0, maxSize); s.of(1, 1) > maxSize {
		t.Error("size above the maximum")
	}
}

// receiver is a worker reduced to its receive path, with frames 0..started-1
// of connection id in flight.
func receiver(id uint32, sz sizes, started uint64) (*worker, *conn) {
	w := &worker{sizes: sz, hist: newHistogram(), pl: plan{active: true, sendUntil: never, drainUntil: never}, begun: true}
	ring := 64
	w.conns = []conn{{id: id, state: stateClosed, origins: make([]int64, ring), mask: uint64(ring - 1)}}
	c := &w.conns[0]
	c.next = started
	w.inflight = int64(started)
	return w, c
}

// feed gives the receiver b in chunks of the sizes split draws.
func feed(w *worker, c *conn, b []byte, split func() int) {
	for len(b) > 0 {
		k := min(len(b), split())
		w.consume(c, b[:k], 1000)
		b = b[k:]
	}
}

func TestReceiveAnySplit(t *testing.T) {
	sz := newSizes(0, 3000)
	var stream []byte
	var bytesWant int64
	const n = 300
	for seq := range uint64(n) {
		f := encode(4, seq, sz.of(4, seq))
		stream = append(stream, f...)
		bytesWant += int64(len(f))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for name, split := range map[string]func() int{
		"whole":   func() int { return len(stream) },
		"1 byte":  func() int { return 1 },
		"3 bytes": func() int { return 3 },
		"random":  func() int { return 1 + rng.IntN(5000) },
	} {
		w, c := receiver(4, sz, n)
		feed(w, c, stream, split)
		if w.st.mismatches != 0 || w.st.replies != n || w.st.frames != n || w.st.bytes != bytesWant || w.st.lost != 0 {
			t.Errorf("%s: %+v, want %d replies of %d bytes and no errors", name, w.st, n, bytesWant)
		}
		if c.expected != n || w.inflight != 0 || w.hist.TotalCount() != n {
			t.Errorf("%s: expected %d inflight %d recorded %d", name, c.expected, w.inflight, w.hist.TotalCount())
		}
	}
}

// Only replies received in [recordFrom, sendUntil) are measured; all are checked.
func TestReceiveMeasuresOnlyTheWindow(t *testing.T) {
	for _, tc := range []struct {
		at       int64
		measured bool
	}{{999, false}, {1000, true}, {1999, true}, {2000, false}} {
		w, c := receiver(1, newSizes(20, 20), 1)
		w.pl.recordFrom, w.pl.sendUntil = 1000, 2000
		w.consume(c, encode(1, 0, 20), tc.at)
		if w.st.replies != 1 || (w.st.frames == 1) != tc.measured || (w.hist.TotalCount() == 1) != tc.measured {
			t.Errorf("reply at %d: %+v, recorded %d; measured should be %v", tc.at, w.st, w.hist.TotalCount(), tc.measured)
		}
	}
}

// Every single altered payload byte, and a wrong length, is a mismatch.
func TestReceiveDetectsCorruption(t *testing.T) {
	for _, plen := range testSizes[:14] {
		good := encode(2, 0, plen)
		for i := frame.HeaderSize; i < len(good); i++ {
			bad := bytes.Clone(good)
			bad[i] ^= 1
			w, c := receiver(2, newSizes(plen, plen), 2)
			feed(w, c, append(bad, encode(2, 1, plen)...), func() int { return 7 })
			if w.st.mismatches != 1 || w.st.replies != 1 || c.expected != 2 {
				t.Fatalf("size %d, byte %d flipped: %+v expected %d; want 1 mismatch then 1 good reply", plen, i, w.st, c.expected)
			}
		}
	}
	// A reply one byte short, then the next frame: the length gives it away.
	w, c := receiver(2, newSizes(20, 20), 2)
	short := encode(2, 0, 20)
	frame.PutHeader(short, 19)
	feed(w, c, append(short[:len(short)-1], encode(2, 1, 20)...), func() int { return 5 })
	if w.st.mismatches != 1 || w.st.replies != 1 {
		t.Errorf("truncated reply: %+v", w.st)
	}
	// Another connection's frame.
	w, _ = receiver(2, newSizes(20, 20), 1)
	feed(w, &w.conns[0], encode(3, 0, 20), func() int { return 100 })
	if w.st.mismatches != 1 {
		t.Errorf("other connection's frame: %+v", w.st)
	}
}

// A dropped reply is lost, and checking resumes at the next one instead of
// failing every reply after it.
func TestReceiveSkipsDroppedReply(t *testing.T) {
	sz := newSizes(minResync, 50)
	w, c := receiver(1, sz, 5)
	var b []byte
	for _, seq := range []uint64{0, 1, 3, 4} {
		b = append(b, encode(1, seq, sz.of(1, seq))...)
	}
	feed(w, c, b, func() int { return 9 })
	if w.st.lost != 1 || w.st.mismatches != 0 || w.st.replies != 4 || w.inflight != 0 {
		t.Errorf("%+v inflight %d; want 1 lost, 4 replies", w.st, w.inflight)
	}
}

// A duplicated reply, or one when nothing is in flight, is a mismatch that
// does not disturb the replies after it.
func TestReceiveDuplicateAndUnsolicited(t *testing.T) {
	w, c := receiver(1, newSizes(30, 30), 2)
	var b []byte
	for _, seq := range []uint64{0, 0, 1, 1} {
		b = append(b, encode(1, seq, 30)...)
	}
	feed(w, c, b, func() int { return 11 })
	if w.st.mismatches != 2 || w.st.replies != 2 || w.st.lost != 0 || c.expected != 2 {
		t.Errorf("%+v expected %d; want 2 replies, 2 mismatches", w.st, c.expected)
	}
}

// Steady state allocates nothing: generating, writing, reading and
// checking frames over a real socket pair.
func TestNoAllocationPerFrame(t *testing.T) {
	fds, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(fds[:])
	w, c := receiver(1, newSizes(0, 200), 0)
	w.wbuf = make([]byte, writeBufSize)
	w.rbuf = make([]byte, readBufSize)
	w.pipeline = 16
	c.fd = fds[0]
	allocs := testing.AllocsPerRun(200, func() {
		n := w.fill(c, c.expected+w.pipeline)
		m, err := writeFd(fds[0], w.wbuf[:n])
		if err != nil || m != n {
			t.Fatalf("write: %d of %d, %v", m, n, err)
		}
		w.advance(c, m, now())
		for got := 0; got < m; {
			k, err := readFd(fds[1], w.rbuf)
			if err != nil {
				t.Fatal(err)
			}
			w.consume(c, w.rbuf[:k], now())
			got += k
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch, want 0", allocs)
	}
	if w.st.mismatches != 0 || w.st.replies == 0 {
		t.Errorf("%+v", w.st)
	}
}
