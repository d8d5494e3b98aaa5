// Package framing describes, decodes and encodes length-prefixed wire
// formats. A frame is
//
//	[prefix: Offset bytes][length field][body: length value + Adjust bytes]
//
// The prefix is opaque to this package (gRPC's flag byte, MQTT's packet
// type). The length field is an unsigned integer of 1, 2, 3, 4 or 8 bytes
// in either byte order, or a protobuf-style varint: LEB128, 7 bits a byte,
// least significant group first, high bit set on every byte but the last.
// Adjust corrects for protocols whose length does not count exactly the
// body: PostgreSQL's counts itself (-4); MySQL's is followed by a sequence
// byte that this package treats as part of the body (+1).
//
// Everything is a pure function over byte slices that allocates nothing on
// the decode and encode paths, so it can be fuzzed on its own and called
// once per frame.
package framing

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// LengthVarint is the Spec.Length of a varint length field. It is negative
// so that it can never be mistaken for a byte width.
const LengthVarint = -1

// Limits on a Spec.
const (
	MaxOffset    = 16
	MaxVarintLen = 10 // a uint64 needs at most 10 groups of 7 bits
	// MaxAdjust bounds |Adjust|. Real protocols adjust by a few header
	// bytes; the bound keeps length value + Adjust and header + body far
	// inside int32 when the body is at most MaxBody, so no size
	// arithmetic can wrap even on 32-bit platforms, and it turns an
	// absurd adjustment into an error instead of a format no frame fits.
	MaxAdjust = 1 << 20
	// MaxBody bounds the maxBody given to New: the server's largest
	// MaxMessage. With it, header + body < 2^31.
	MaxBody = 1 << 30

	defaultVarintMax = 5 // enough for any body up to 32 GiB
)

// Spec describes a wire format. The zero Spec is the default format,
// u32le: a Length of 0 means 4, and BigEndian's zero value is false.
type Spec struct {
	Offset    int   // bytes before the length field, 0..16
	Length    int   // width of the length field: 1, 2, 3, 4, 8, or LengthVarint
	BigEndian bool  // byte order of widths 2, 3, 4 and 8; ignored otherwise
	Adjust    int64 // added to the length value to get the body size, |Adjust| <= MaxAdjust
	VarintMax int   // most bytes of a varint length, 1..10 (0 means 5); must be 0 for fixed widths
}

// presets is sorted by name so that Presets and String are deterministic.
var presets = []struct {
	name string
	spec Spec
}{
	{"grpc", Spec{Offset: 1, Length: 4, BigEndian: true}},
	{"mqtt", Spec{Offset: 1, Length: LengthVarint, VarintMax: 4}},
	{"mysql", Spec{Length: 3, Adjust: 1}},
	{"u16be", Spec{Length: 2, BigEndian: true}},
	{"u16le", Spec{Length: 2}},
	{"u24be", Spec{Length: 3, BigEndian: true}},
	{"u24le", Spec{Length: 3}},
	{"u32be", Spec{Length: 4, BigEndian: true}},
	{"u32le", Spec{Length: 4}},
	{"u64be", Spec{Length: 8, BigEndian: true}},
	{"u8", Spec{Length: 1}},
	{"varint", Spec{Length: LengthVarint, VarintMax: defaultVarintMax}},
}

// Presets returns the preset names ParseSpec accepts, sorted.
func Presets() []string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.name
	}
	return names
}

// The wording of each rule, shared by ParseSpec (which quotes what it was
// given) and validation (which prints the number).
const (
	ruleOffset    = "offset must be 0 to 16"
	ruleLength    = "length must be 1, 2, 3, 4, 8 or varint"
	ruleOrder     = "order must be le or be"
	ruleAdjust    = "adjust must be from -1048576 to 1048576"
	ruleVarintMax = "varint-max must be 1 to 10"
)

var keys = []string{"length", "order", "offset", "adjust", "varint-max"}

// ParseSpec parses a preset name (see Presets) or a comma-separated list of
// key=value pairs:
//
//	length      1, 2, 3, 4, 8 or varint          (default 4)
//	order       le or be; ignored for 1, varint  (default be)
//	offset      bytes before the length, 0..16   (default 0)
//	adjust      signed, added to the length      (default 0)
//	varint-max  most varint bytes, 1..10         (default 5)
//
// Note that order defaults to be here, as in most protocols, while the zero
// Spec is little-endian. The returned Spec is normalised (see Format.Spec).
func ParseSpec(s string) (Spec, error) {
	if strings.TrimSpace(s) == "" {
		return Spec{}, errors.New("framing: empty spec (want a preset such as u32le, or key=value pairs)")
	}
	items := strings.Split(s, ",")
	if len(items) == 1 && !strings.Contains(s, "=") {
		name := strings.TrimSpace(s)
		for _, p := range presets {
			if p.name == name {
				return p.spec.normal(), nil
			}
		}
		return Spec{}, fmt.Errorf("framing: unknown preset %q (presets: %s)", name, strings.Join(Presets(), ", "))
	}
	spec := Spec{Length: 4, BigEndian: true}
	seen := map[string]bool{}
	for _, item := range items {
		key, val, ok := strings.Cut(item, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok {
			if item = strings.TrimSpace(item); item == "" {
				return Spec{}, fmt.Errorf("framing: empty item in %q", s)
			}
			return Spec{}, fmt.Errorf("framing: %q is not key=value (a preset must stand alone)", item)
		}
		if !slices.Contains(keys, key) {
			return Spec{}, fmt.Errorf("framing: unknown key %q (keys: %s)", key, strings.Join(keys, ", "))
		}
		if seen[key] {
			return Spec{}, fmt.Errorf("framing: duplicate key %q", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "length":
			switch val {
			case "1", "2", "3", "4", "8":
				spec.Length = int(val[0] - '0')
			case "varint":
				spec.Length = LengthVarint
			default:
				err = errors.New(ruleLength)
			}
		case "order":
			if val != "le" && val != "be" {
				err = errors.New(ruleOrder)
			}
			spec.BigEndian = val == "be"
		case "offset":
			spec.Offset, err = parseInt(val, 0, MaxOffset, ruleOffset)
		case "adjust":
			var a int
			a, err = parseInt(val, -MaxAdjust, MaxAdjust, ruleAdjust)
			spec.Adjust = int64(a)
		case "varint-max":
			spec.VarintMax, err = parseInt(val, 1, MaxVarintLen, ruleVarintMax)
		}
		if err != nil {
			return Spec{}, fmt.Errorf("framing: %v, got %q", err, val)
		}
	}
	if seen["varint-max"] && spec.Length != LengthVarint {
		return Spec{}, fmt.Errorf("framing: varint-max applies only to length=varint, got length=%d", spec.Length)
	}
	spec = spec.normal()
	if err := spec.validate(); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

// parseInt parses a decimal integer in [lo, hi]; the error is the rule.
func parseInt(s string, lo, hi int, rule string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < int64(lo) || n > int64(hi) {
		return 0, errors.New(rule)
	}
	return int(n), nil
}

// String returns the canonical spelling of s: a preset name when s is one,
// otherwise key=value pairs in the order of the table above, leaving out
// defaults except that fixed widths above 1 always spell their order.
// ParseSpec(s.String()) returns s normalised.
func (s Spec) String() string {
	s = s.normal()
	for _, p := range presets {
		if p.spec == s {
			return p.name
		}
	}
	var b strings.Builder
	if s.Length == LengthVarint {
		b.WriteString("length=varint")
	} else {
		fmt.Fprintf(&b, "length=%d", s.Length)
	}
	if s.Length > 1 {
		if s.BigEndian {
			b.WriteString(",order=be")
		} else {
			b.WriteString(",order=le")
		}
	}
	if s.Offset != 0 {
		fmt.Fprintf(&b, ",offset=%d", s.Offset)
	}
	if s.Adjust != 0 {
		fmt.Fprintf(&b, ",adjust=%d", s.Adjust)
	}
	if s.VarintMax != 0 && (s.Length != LengthVarint || s.VarintMax != defaultVarintMax) {
		fmt.Fprintf(&b, ",varint-max=%d", s.VarintMax)
	}
	return b.String()
}

// normal fills in defaults and clears what the format ignores, so that
// equal formats have equal Specs.
func (s Spec) normal() Spec {
	if s.Length == 0 {
		s.Length = 4
	}
	if s.Length == 1 || s.Length == LengthVarint {
		s.BigEndian = false
	}
	if s.Length == LengthVarint && s.VarintMax == 0 {
		s.VarintMax = defaultVarintMax
	}
	return s
}

// validate checks a normalised Spec on its own, without a body maximum.
func (s Spec) validate() error {
	switch {
	case s.Offset < 0 || s.Offset > MaxOffset:
		return fmt.Errorf("framing: %s, got %d", ruleOffset, s.Offset)
	case !slices.Contains([]int{1, 2, 3, 4, 8, LengthVarint}, s.Length):
		return fmt.Errorf("framing: %s, got %d", ruleLength, s.Length)
	case s.Length == LengthVarint && (s.VarintMax < 1 || s.VarintMax > MaxVarintLen):
		return fmt.Errorf("framing: %s, got %d", ruleVarintMax, s.VarintMax)
	case s.Length != LengthVarint && s.VarintMax != 0:
		return fmt.Errorf("framing: varint-max applies only to length=varint, got length=%d", s.Length)
	case s.Adjust < -MaxAdjust || s.Adjust > MaxAdjust:
		return fmt.Errorf("framing: %s, got %d", ruleAdjust, s.Adjust)
	}
	// A field too narrow for the adjustment would reject every frame.
	if m := s.fieldMax(); s.Adjust < 0 && m < uint64(-s.Adjust) {
		return fmt.Errorf("framing: adjust %d makes every body negative: the length field holds at most %d", s.Adjust, m)
	}
	return nil
}

// fieldMax is the largest value the length field can hold.
func (s Spec) fieldMax() uint64 {
	bits := 8 * s.Length
	if s.Length == LengthVarint {
		bits = 7 * s.VarintMax
	}
	if bits >= 64 {
		return math.MaxUint64
	}
	return 1<<bits - 1
}
