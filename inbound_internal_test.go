package frameloop

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/frameloop/frameloop/internal/framing"
	"github.com/frameloop/frameloop/internal/testkit"
)

// frameCollector keeps a copy of every frame delivered, as Conn.Frame saw
// it, and writes nothing.
type frameCollector struct {
	EchoHandler
	raw, bodies [][]byte
}

func (fc *frameCollector) OnFrame(c *Conn, body []byte) {
	f := c.Frame()
	if !bytes.Equal(f.Body, body) {
		panic("Conn.Frame().Body differs from the body OnFrame got")
	}
	fc.raw = append(fc.raw, bytes.Clone(f.Raw))
	fc.bodies = append(fc.bodies, bytes.Clone(body))
}

// The loop's read path — decoding from the shared buffer, keeping an
// unfinished frame, completing it from the next read — delivers the same
// frames wherever the reads cut the stream: at every byte, inside the
// prefix, inside a varint, inside the body; for every framing. Driven by
// hand, so every cut is certain.
func TestReadPathDeliversEveryFrameWhereverReadsCut(t *testing.T) {
	specs := append(framing.Presets(), "length=2,order=be,adjust=-2", "offset=3,length=varint,varint-max=3")
	for _, spec := range specs {
		t.Run(spec, func(t *testing.T) {
			f, err := framing.ParseSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			fc := &frameCollector{}
			l, st := newDetachedLoop(t, fc, Config{Framing: f, MaxMessage: 250})
			var stream []byte
			var want [][]byte
			for i, n := range []int{0, 1, 127, 128, 250, 2} {
				n = max(n, int(f.Adjust))
				prefix := testkit.Pattern(l.format.Offset(), uint64(i))
				frame, err := l.format.Append(nil, prefix, testkit.Pattern(n, uint64(i)))
				if err != nil {
					t.Fatal(err)
				}
				stream = append(stream, frame...)
				want = append(want, frame)
			}
			check := func(how string) {
				t.Helper()
				if len(fc.raw) != len(want) {
					t.Fatalf("%s: %d frames delivered, want %d", how, len(fc.raw), len(want))
				}
				for i := range want {
					if !bytes.Equal(fc.raw[i], want[i]) {
						t.Fatalf("%s: frame %d is %s, want %s", how, i, testkit.Preview(fc.raw[i]), testkit.Preview(want[i]))
					}
				}
				if st.in != nil || st.inCharge != 0 || l.srv.inmem.used.Load() != 0 {
					t.Fatalf("%s: input left held: buffer %v, charge %d, budget used %d", how, st.in != nil, st.inCharge, l.srv.inmem.used.Load())
				}
				fc.raw, fc.bodies = nil, nil
			}
			for cut := 1; cut < len(stream); cut++ {
				l.consume(st, stream[:cut])
				l.consume(st, stream[cut:])
				check(fmt.Sprintf("cut at byte %d", cut))
			}
			for i := range stream {
				l.consume(st, stream[i:i+1])
			}
			check("a byte at a time")
			l.consume(st, stream)
			check("all at once")
		})
	}
}
