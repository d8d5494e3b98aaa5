package loadgen

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/frameloop/frameloop/internal/framing"
)

var testSizes = []int{0, 1, 3, 4, 11, 12, 13, 15, 16, 17, 19, 20, 63, 64, 65, 127, 128, 129, 1000, 16383, 16384, 70001}

// customSpecs are formats beyond the presets that the tables also cover:
// hashed prefixes, both signs of adjust, a short varint.
var customSpecs = []string{
	"length=2,order=le,offset=3",
	"length=1,adjust=-4,offset=2",
	"length=varint,varint-max=3,offset=16,adjust=7",
	"length=8,order=le,offset=9",
}

// formats is every preset, the default first, then customSpecs.
func formats() []string {
	names := []string{"u32le"}
	for _, p := range framing.Presets() {
		if p != "u32le" {
			names = append(names, p)
		}
	}
	return append(names, customSpecs...)
}

func mustWire(t testing.TB, spec string) *wire {
	t.Helper()
	s, err := framing.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	x, err := newWire(s)
	if err != nil {
		t.Fatal(err)
	}
	return &x
}

// eachFormat runs f as a subtest for every format of formats().
func eachFormat(t *testing.T, f func(t *testing.T, x *wire)) {
	for _, name := range formats() {
		t.Run(name, func(t *testing.T) { f(t, mustWire(t, name)) })
	}
}

// fits returns the sizes of ss that x carries.
func (x *wire) fits(ss []int) []int {
	var out []int
	for _, s := range ss {
		if s >= x.minLen && s <= x.maxLen {
			out = append(out, s)
		}
	}
	return out
}

// clip returns the sizes min..max moved into what x carries.
func (x *wire) clip(lo, hi int) sizes {
	lo = min(max(lo, x.minLen), x.maxLen)
	hi = min(max(hi, lo), x.maxLen)
	return newSizes(lo, hi)
}

// encode is frame (id, seq) with a payload of plen bytes, generated in one go.
func (x *wire) encode(id uint32, seq uint64, plen int) []byte {
	b := make([]byte, x.headerLen(plen)+plen)
	if n := x.fillFrame(b, id, seq, plen, 0); n != len(b) {
		panic("short fill")
	}
	return b
}

// The frames are what internal/framing encodes and decodes: the prefix the
// format gets, the length field, the stamped payload.
func TestFrameLayout(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		for _, plen := range x.fits([]int{0, 1, 3, 12, 40, 127, 128, 255, 300, 16384}) {
			b := x.encode(7, 0x0102030405060708, plen)
			n, h, _, err := x.f.Next(b)
			if err != nil || n != len(b) || h != x.headerLen(plen) || n-h != plen {
				t.Fatalf("size %d: Next = %d, %d, %v for a frame of %d bytes", plen, n, h, err, len(b))
			}
			if hl, err := x.f.HeaderLen(plen); err != nil || hl != h {
				t.Fatalf("size %d: header %d bytes, framing says %d (%v)", plen, h, hl, err)
			}
			// The same bytes as framing's own encoder, given our prefix.
			want, err := x.f.Append(nil, b[:x.off], b[h:])
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("size %d: % x, framing.Append gives % x (%v)", plen, b[:h], want[:min(len(want), h)], err)
			}
			payload := b[h:]
			stamp := binary.LittleEndian.AppendUint32(nil, 7)
			stamp = binary.LittleEndian.AppendUint64(stamp, 0x0102030405060708)
			if !bytes.HasPrefix(payload, stamp[:min(plen, stampSize)]) {
				t.Fatalf("size %d: payload starts % x", plen, payload[:min(plen, stampSize)])
			}
		}
		// The prefix: a protocol's byte for grpc and mqtt, else hashed from
		// (id, seq), differing between frames and connections.
		p1, p2, p3 := x.encode(7, 1, 20)[:x.off], x.encode(7, 2, 20)[:x.off], x.encode(8, 1, 20)[:x.off]
		switch {
		case x.name == "grpc" && !bytes.Equal(p1, []byte{0x00}):
			t.Errorf("grpc prefix % x, want 00", p1)
		case x.name == "mqtt" && !bytes.Equal(p1, []byte{0x30}):
			t.Errorf("mqtt prefix % x, want 30", p1)
		case x.hashed && (bytes.Equal(p1, p2) || bytes.Equal(p1, p3)):
			t.Errorf("hashed prefixes repeat: % x, % x, % x", p1, p2, p3)
		case x.hashed != (x.off > 0 && x.name != "grpc" && x.name != "mqtt"):
			t.Errorf("offset %d: hashed %v", x.off, x.hashed)
		}
		// The pattern differs between frames and between connections.
		pat := func(id uint32, seq uint64) []byte {
			b := x.encode(id, seq, 40+x.minLen)
			return b[x.headerLen(40+x.minLen)+stampSize:]
		}
		if bytes.Equal(pat(7, 1), pat(7, 2)) || bytes.Equal(pat(7, 1), pat(8, 1)) {
			t.Error("two frames share a pattern")
		}
	})
	// A short payload carries the stamp's first bytes.
	if got := mustWire(t, "u32le").encode(7, 9, 3); !bytes.Equal(got, []byte{3, 0, 0, 0, 7, 0, 0}) {
		t.Errorf("3-byte frame is % x", got)
	}
	if got := mustWire(t, "mqtt").encode(7, 9, 3); !bytes.Equal(got, []byte{0x30, 3, 7, 0, 0}) {
		t.Errorf("3-byte mqtt frame is % x", got)
	}
	if got := mustWire(t, "varint").encode(1, 0, 200)[:4]; !bytes.Equal(got, []byte{0xc8, 0x01, 1, 0}) {
		t.Errorf("200-byte varint frame starts % x", got)
	}
}

// The payload sizes a format accepts are exactly those framing can encode.
func TestPayloadRange(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		check := func(plen int, ok bool) {
			t.Helper()
			if _, err := x.f.HeaderLen(plen); (err == nil) != ok {
				t.Errorf("size %d: HeaderLen error %v, want ok %v (range %d..%d)", plen, err, ok, x.minLen, x.maxLen)
			}
		}
		check(x.minLen, true)
		check(x.maxLen, true)
		check(x.minLen-1, false)
		check(x.maxLen+1, false) // maxSize+1 is beyond the Format's maximum
		for _, plen := range x.fits([]int{0, 1, 126, 127, 128, 16383, 16384, 1<<21 - 1, maxSize}) {
			if h, _ := x.f.HeaderLen(plen); h != x.headerLen(plen) {
				t.Errorf("size %d: header %d bytes, framing says %d", plen, x.headerLen(plen), h)
			}
		}
	})
	for spec, want := range map[string][2]int{
		"u32le": {0, maxSize}, "u8": {0, 255}, "u16be": {0, 65535}, "u24le": {0, maxSize}, "mysql": {1, maxSize},
		"length=1,adjust=-4": {0, 251}, "length=1,adjust=10": {10, 265},
		"length=varint,varint-max=1": {0, 127}, "length=varint,varint-max=2,adjust=-1": {0, 16382},
		"length=4,adjust=1048576": {maxSize, maxSize},
	} {
		if x := mustWire(t, spec); x.minLen != want[0] || x.maxLen != want[1] {
			t.Errorf("%s: payloads %d..%d, want %d..%d", spec, x.minLen, x.maxLen, want[0], want[1])
		}
	}
}

// Generating a frame piecewise, from any offset, gives the same bytes.
func TestFillFromAnyOffset(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, plen := range x.fits(testSizes) {
			want := x.encode(3, 99, plen)
			got := make([]byte, 0, len(want))
			for from := 0; from < len(want); {
				chunk := make([]byte, 1+rng.IntN(40))
				n := x.fillFrame(chunk, 3, 99, plen, from)
				got = append(got, chunk[:n]...)
				from += n
			}
			if !bytes.Equal(got, want) {
				t.Errorf("size %d: piecewise fill differs", plen)
			}
			if n := x.fillFrame(make([]byte, 8), 3, 99, plen, len(want)); n != 0 {
				t.Errorf("size %d: %d bytes filled past the end", plen, n)
			}
			// The check agrees from any offset: every alignment, and far in.
			lead := x.headerLen(plen) + stampSize
			for _, q := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 31, 33, 1001, 40000} {
				if q+lead > len(want) {
					break
				}
				if !checkPattern(want[lead+q:], patternSeed(3, 99), q) {
					t.Fatalf("size %d: pattern check fails from offset %d", plen, q)
				}
			}
		}
	})
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

// receiver is a worker reduced to its receive path, in format x, with
// frames 0..started-1 of connection id in flight.
func receiver(x *wire, id uint32, sz sizes, started uint64) (*worker, *conn) {
	w := &worker{sizes: sz, wire: *x, hist: newHistogram(), pl: plan{active: true, sendUntil: never, drainUntil: never}, begun: true}
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

// stream is frames 0..n-1 of connection id, and their total size.
func (x *wire) stream(id uint32, sz sizes, n int) []byte {
	var b []byte
	for seq := range uint64(n) {
		b = append(b, x.encode(id, seq, sz.of(id, seq))...)
	}
	return b
}

// checkAllGood fails unless the receiver verified n replies making up
// stream, and nothing else.
func checkAllGood(t *testing.T, what string, w *worker, c *conn, n int, stream []byte) {
	t.Helper()
	if w.st.mismatches != 0 || w.st.replies != int64(n) || w.st.frames != int64(n) || w.st.bytes != int64(len(stream)) || w.st.lost != 0 {
		t.Fatalf("%s: %+v, want %d replies of %d bytes and no errors", what, w.st, n, len(stream))
	}
	if c.expected != uint64(n) || w.inflight != 0 || w.hist.TotalCount() != int64(n) || c.hlen != 0 || c.hdrN != 0 {
		t.Fatalf("%s: expected %d inflight %d recorded %d hlen %d hdrN %d", what, c.expected, w.inflight, w.hist.TotalCount(), c.hlen, c.hdrN)
	}
}

// Replies are checked whatever the reads cut them into.
func TestReceiveAnySplit(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		// Up to 20000 bytes: a varint's header takes 1, 2 and 3 bytes.
		sz := x.clip(0, 20000)
		const n = 200
		stream := x.stream(4, sz, n)
		rng := rand.New(rand.NewPCG(3, 4))
		for _, tc := range []struct {
			name  string
			split func() int
		}{
			{"whole", func() int { return len(stream) }},
			{"1 byte", func() int { return 1 }},
			{"3 bytes", func() int { return 3 }},
			{"random", func() int { return 1 + rng.IntN(5000) }},
			{"random small", func() int { return 1 + rng.IntN(30) }},
		} {
			w, c := receiver(x, 4, sz, n)
			feed(w, c, stream, tc.split)
			checkAllGood(t, tc.name, w, c, n, stream)
		}
	})
}

// A few frames, cut at every byte: two reads, and three.
func TestReceiveSplitAtEveryByte(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		// Short payloads (stamp cut short, empty ones), and payloads on
		// both sides of a varint's one-byte limit.
		for _, sz := range []sizes{x.clip(0, 20), x.clip(120+x.adjust, 135+x.adjust)} {
			const n = 6
			stream := x.stream(9, sz, n)
			for i := 0; i <= len(stream); i++ {
				w, c := receiver(x, 9, sz, n)
				w.consume(c, stream[:i], 1000)
				w.consume(c, stream[i:], 1000)
				checkAllGood(t, "split at "+itoa(i), w, c, n, stream)
				j := min(i+1+i%(x.maxHdr+1), len(stream)) // a piece no longer than a header
				w, c = receiver(x, 9, sz, n)
				w.consume(c, stream[:i], 1000)
				w.consume(c, stream[i:j], 1000)
				w.consume(c, stream[j:], 1000)
				checkAllGood(t, "split at "+itoa(i)+" and "+itoa(j), w, c, n, stream)
			}
		}
	})
}

// Only replies received in [recordFrom, sendUntil) are measured; all are checked.
func TestReceiveMeasuresOnlyTheWindow(t *testing.T) {
	x := mustWire(t, "u32le")
	for _, tc := range []struct {
		at       int64
		measured bool
	}{{999, false}, {1000, true}, {1999, true}, {2000, false}} {
		w, c := receiver(x, 1, newSizes(20, 20), 1)
		w.pl.recordFrom, w.pl.sendUntil = 1000, 2000
		w.consume(c, x.encode(1, 0, 20), tc.at)
		if w.st.replies != 1 || (w.st.frames == 1) != tc.measured || (w.hist.TotalCount() == 1) != tc.measured {
			t.Errorf("reply at %d: %+v, recorded %d; want measured %v", tc.at, w.st, w.hist.TotalCount(), tc.measured)
		}
	}
}

// Every single altered byte is a mismatch: prefix, length field, payload.
// A damaged prefix or payload costs that reply alone; a damaged length
// loses the frame boundary, so only the first mismatch is certain.
func TestReceiveDetectsCorruption(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		sizesChecked := x.fits([]int{0, 1, 3, 11, 12, 13, 16, 17, 20, 64, 200})
		// After a damaged length: 0xff bytes, enough to complete any length
		// the field may now announce, then a header too large or malformed
		// (u8 and u16 take a few more frames of them), which ends the read.
		pad := bytes.Repeat([]byte{0xff}, x.maxLen+x.maxHdr)
		for _, plen := range sizesChecked {
			good := x.encode(2, 0, plen)
			h := x.headerLen(plen)
			next := append(x.encode(2, 1, plen), x.encode(2, 2, plen)...)
			for i := range good {
				for _, bit := range []byte{0x01, 0x80} {
					bad := bytes.Clone(good)
					bad[i] ^= bit
					w, c := receiver(x, 2, newSizes(plen, plen), 3)
					if i >= x.off && i < h {
						feed(w, c, bad, func() int { return 7 })
						w.consume(c, pad, 1000)
						if w.st.mismatches < 1 || w.st.replies != 0 {
							t.Fatalf("size %d, length byte %d ^%#x: %+v; want a mismatch, no reply", plen, i, bit, w.st)
						}
						continue
					}
					feed(w, c, append(bad, next...), func() int { return 7 })
					if w.st.mismatches != 1 || w.st.replies != 2 || c.expected != 3 || w.st.lost != 0 {
						t.Fatalf("size %d, byte %d ^%#x (header %d bytes): %+v expected %d; want 1 mismatch then 2 good replies",
							plen, i, bit, h, w.st, c.expected)
					}
				}
			}
		}
		// A reply one byte short, then the next frame: the length gives it away.
		if plen := x.minLen + 20; plen <= x.maxLen {
			w, c := receiver(x, 2, newSizes(plen, plen), 2)
			short := x.encode(2, 0, plen)
			h := x.headerLen(plen)
			short = append(x.encode(2, 0, plen-1)[:x.headerLen(plen-1)], short[h:len(short)-1]...)
			feed(w, c, append(short, x.encode(2, 1, plen)...), func() int { return 5 })
			if w.st.mismatches != 1 || w.st.replies != 1 {
				t.Errorf("truncated reply: %+v", w.st)
			}
		}
		// Another connection's frame.
		sz := x.clip(20, 20)
		w, c := receiver(x, 2, sz, 1)
		feed(w, c, x.encode(3, 0, sz.of(3, 0)), func() int { return 100 })
		if w.st.mismatches != 1 {
			t.Errorf("other connection's frame: %+v", w.st)
		}
	})
}

// A varint length in more bytes than needed carries the right value, but
// not the bytes sent: a mismatch, and the stream carries on.
func TestReceiveNonMinimalVarint(t *testing.T) {
	x := mustWire(t, "mqtt")
	w, c := receiver(x, 1, newSizes(20, 20), 2)
	f := x.encode(1, 0, 20) // 30 14 stamp...
	long := append([]byte{f[0], f[1] | 0x80, 0x00}, f[2:]...)
	feed(w, c, append(long, x.encode(1, 1, 20)...), func() int { return 3 })
	if w.st.mismatches != 1 || w.st.replies != 1 || c.expected != 2 {
		t.Errorf("%+v expected %d; want 1 mismatch, 1 reply", w.st, c.expected)
	}
}

// A header no frame of the run has is a mismatch and ends the connection.
func TestReceiveBadHeader(t *testing.T) {
	for spec, hdr := range map[string][]byte{
		"u32le":  {0x01, 0x00, 0x10, 0x00},       // 1 MiB + 1
		"u32be":  {0xff, 0xff, 0xff, 0xff},       // 4 GiB - 1
		"varint": {0x80, 0x80, 0x80, 0x80, 0x80}, // longer than 5 bytes
		"mqtt":   {0x30, 0xff, 0xff, 0xff, 0x7f}, // 256 MiB - 1
		"u64be":  {0x80, 0, 0, 0, 0, 0, 0, 0},
	} {
		x := mustWire(t, spec)
		for _, split := range []int{1, len(hdr)} {
			w, c := receiver(x, 1, newSizes(20, 20), 1)
			c.state, c.fd = stateOpen, -1 // no socket: close has nothing to close
			b := append(bytes.Clone(hdr), 0, 0, 0, 0, 0, 0)
			for ; len(b) > 0 && c.state == stateOpen; b = b[min(split, len(b)):] {
				w.consume(c, b[:min(split, len(b))], 1000)
			}
			if w.st.mismatches != 1 || w.st.connErrors != 1 || c.state != stateClosed || w.st.firstErr == nil {
				t.Errorf("%s, split %d: %+v state %d", spec, split, w.st, c.state)
			}
		}
	}
}

// A dropped reply is lost, and checking resumes at the next one instead of
// failing every reply after it.
func TestReceiveSkipsDroppedReply(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		sz := x.clip(minResync, 50)
		w, c := receiver(x, 1, sz, 5)
		var b []byte
		for _, seq := range []uint64{0, 1, 3, 4} {
			b = append(b, x.encode(1, seq, sz.of(1, seq))...)
		}
		feed(w, c, b, func() int { return 9 })
		if w.st.lost != 1 || w.st.mismatches != 0 || w.st.replies != 4 || w.inflight != 0 {
			t.Errorf("%+v inflight %d; want 1 lost, 4 replies", w.st, w.inflight)
		}
		// With a damaged prefix, the frames skipped are lost all the same.
		if x.off == 0 {
			return
		}
		w, c = receiver(x, 1, sz, 5)
		b = nil
		for _, seq := range []uint64{0, 2, 3, 4} {
			f := x.encode(1, seq, sz.of(1, seq))
			if seq == 2 {
				f[0] ^= 4
			}
			b = append(b, f...)
		}
		feed(w, c, b, func() int { return 9 })
		if w.st.lost != 1 || w.st.mismatches != 1 || w.st.replies != 3 || w.inflight != 0 {
			t.Errorf("damaged prefix: %+v inflight %d; want 1 lost, 1 mismatch, 3 replies", w.st, w.inflight)
		}
	})
}

// A duplicated reply, or one when nothing is in flight, is a mismatch that
// does not disturb the replies after it.
func TestReceiveDuplicateAndUnsolicited(t *testing.T) {
	eachFormat(t, func(t *testing.T, x *wire) {
		sz := x.clip(30, 30)
		w, c := receiver(x, 1, sz, 2)
		var b []byte
		for _, seq := range []uint64{0, 0, 1, 1} {
			b = append(b, x.encode(1, seq, sz.of(1, seq))...)
		}
		feed(w, c, b, func() int { return 11 })
		if w.st.mismatches != 2 || w.st.replies != 2 || w.st.lost != 0 || c.expected != 2 {
			t.Errorf("%+v expected %d; want 2 replies, 2 mismatches", w.st, c.expected)
		}
	})
}

// Steady state allocates nothing: generating, writing, reading and
// checking frames over a real socket pair.
func TestNoAllocationPerFrame(t *testing.T) {
	for _, spec := range []string{"u32le", "varint", "mqtt", "u16be", "length=2,order=le,offset=3"} {
		t.Run(spec, func(t *testing.T) {
			fds, err := socketPair()
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll(fds[:])
			x := mustWire(t, spec)
			w, c := receiver(x, 1, x.clip(0, 200), 0)
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
				// Small reads: headers split between them too.
				for got := 0; got < m; {
					k, err := readFd(fds[1], w.rbuf[:1+got%97])
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
		})
	}
}
