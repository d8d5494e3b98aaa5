package loadgen

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/frameloop/frameloop/internal/framing"
)

// maxHeader is the largest frame header any format has: the longest prefix
// and the longest varint length field.
const maxHeader = framing.MaxOffset + framing.MaxVarintLen

// wire is the run's framing (see internal/framing) as the hot path needs
// it: the compiled format, and the few facts the sender and receiver look
// at on every frame copied out of it, so that the default format costs no
// call.
//
// A frame is [prefix][length field][payload]. The payload is the stamp and
// pattern of payload.go. The prefix bytes are a function of (id, seq) like
// the payload, so that the receiver regenerates and checks them too:
// protocol presets get a fixed plausible byte (see fixedPrefixes), any other
// format with an Offset gets bytes hashed from (id, seq).
type wire struct {
	f      *framing.Format
	name   string // canonical spelling of the format (Spec.String)
	fast   bool   // u32le: no prefix, no adjustment, the default
	varint bool   // the header size depends on the payload size
	off    int    // prefix bytes
	hdr    int    // header size of a fixed-width format
	maxHdr int    // largest header
	adjust int    // payload size = length value + adjust
	hashed bool   // prefix bytes are hashed from (id, seq); else fixed
	fixed  [framing.MaxOffset]byte
	minLen int // smallest payload the format can carry, within maxSize
	maxLen int // largest
}

// fixedPrefixes are the prefix bytes of the presets that have a prefix:
// what the protocol would put there, since an echo server does not read it.
var fixedPrefixes = map[string][]byte{
	"grpc": {0x00}, // Compressed-Flag 0: an uncompressed message
	"mqtt": {0x30}, // fixed header of PUBLISH, QoS 0, no DUP, no RETAIN
}

// wire compiles the run's framing and checks its payload sizes against it.
func (c *Config) wire() (wire, error) {
	x, err := newWire(c.Framing)
	if err != nil {
		return x, fmt.Errorf("--framing %s: %s", c.Framing, strings.TrimPrefix(err.Error(), "framing: "))
	}
	return x, x.checkSizes(c.SizeMin, c.SizeMax)
}

// newWire compiles spec for payloads of up to maxSize bytes.
func newWire(spec framing.Spec) (wire, error) {
	f, err := framing.New(spec, maxSize)
	if err != nil {
		return wire{}, err
	}
	s := f.Spec()
	x := wire{
		f:      f,
		name:   s.String(),
		varint: s.Length == framing.LengthVarint,
		off:    f.Offset(),
		hdr:    f.MaxHeader(),
		maxHdr: f.MaxHeader(),
		adjust: int(s.Adjust),
	}
	x.fast = s == framing.Spec{Length: 4}
	if p, ok := fixedPrefixes[x.name]; ok {
		copy(x.fixed[:], p)
	} else {
		x.hashed = x.off > 0
	}
	x.minLen, x.maxLen = payloadRange(s)
	return x, nil
}

// payloadRange is the range of payload sizes, within 0..maxSize, whose
// length value (size - Adjust) the length field can hold. It is never
// empty: framing.New refuses an Adjust above maxSize, and one that makes
// every length value negative.
func payloadRange(s framing.Spec) (lo, hi int) {
	bitsN := 8 * s.Length
	if s.Length == framing.LengthVarint {
		bitsN = 7 * s.VarintMax
	}
	lo, hi = max(0, int(s.Adjust)), maxSize
	if bitsN < 32 { // wider fields hold any value up to maxSize+MaxAdjust
		hi = min(hi, 1<<bitsN-1+int(s.Adjust))
	}
	return lo, hi
}

// checkSizes reports, in one line naming --size, if payloads of lo..hi
// bytes do not all fit the format.
func (x *wire) checkSizes(lo, hi int) error {
	if lo >= x.minLen && hi <= x.maxLen {
		return nil
	}
	size := strconv.Itoa(lo)
	if hi != lo {
		size += ":" + strconv.Itoa(hi)
	}
	what := fmt.Sprintf("from %d to %d payload bytes", x.minLen, x.maxLen)
	switch {
	case x.minLen == 0:
		what = "at most " + plural(x.maxLen, "payload byte")
	case x.maxLen == maxSize:
		what = "at least " + plural(x.minLen, "payload byte")
	}
	return fmt.Errorf("--size %s does not fit --framing %s, which carries %s", size, x.name, what)
}

// headerLen is the header size of a frame carrying plen payload bytes.
func (x *wire) headerLen(plen int) int {
	if !x.varint {
		return x.hdr
	}
	v := uint64(plen - x.adjust)
	return x.off + (bits.Len64(v|1)+6)/7
}

// putPrefix writes the prefix bytes of frame (id, seq) into dst[:x.off].
func (x *wire) putPrefix(dst []byte, id uint32, seq uint64) {
	dst = dst[:x.off]
	if !x.hashed {
		copy(dst, x.fixed[:])
		return
	}
	w := mix64(uint64(id)<<40 ^ seq ^ 0x7e57ab1e)
	for len(dst) >= 8 {
		binary.LittleEndian.PutUint64(dst, w)
		dst = dst[8:]
		w += golden
	}
	for k := range dst {
		dst[k] = byte(w >> (8 * k))
	}
}

// prefixMatches reports whether got is the prefix of frame (id, seq).
func (x *wire) prefixMatches(got []byte, id uint32, seq uint64) bool {
	if !x.hashed {
		return string(got) == string(x.fixed[:x.off])
	}
	var want [framing.MaxOffset]byte
	x.putPrefix(want[:], id, seq)
	return string(got) == string(want[:x.off])
}

// putHeader writes the header of frame (id, seq) carrying plen payload
// bytes into dst and returns its size.
func (x *wire) putHeader(dst []byte, id uint32, seq uint64, plen int) int {
	x.putPrefix(dst, id, seq)
	return x.f.PutHeader(dst, dst[:x.off], plen)
}

// decodeHeader reads the header at the start of b. It returns its size h
// and the payload size it announces, or h == 0 if b holds only part of it.
// A malformed header, or one announcing more than maxSize, is an error.
func (x *wire) decodeHeader(b []byte) (h, plen int, err error) {
	h = x.hdr
	if x.varint {
		end := min(len(b), x.maxHdr)
		h = 0
		for i := x.off; i < end; i++ {
			if b[i] < 0x80 {
				h = i + 1
				break
			}
		}
		if h == 0 {
			if end < x.maxHdr {
				return 0, 0, nil
			}
			h = end // too long: Next says so
		}
	} else if len(b) < h {
		return 0, 0, nil
	}
	// Given just the header, Next reports the frame's total size as need
	// (or as n, equal to need, when the payload is empty).
	_, _, need, err := x.f.Next(b[:h])
	if err != nil {
		return 0, 0, err
	}
	return h, need - h, nil
}
