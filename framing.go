package frameloop

import "github.com/frameloop/frameloop/internal/framing"

// Framing describes the wire format of a length-prefixed protocol: Offset
// fixed bytes before the length field (gRPC's flag byte, MQTT's packet
// type), a length field of Length bytes (1, 2, 3, 4 or 8, BigEndian or
// not) or an unsigned LEB128 varint of at most VarintMax bytes
// (Length == LengthVarint), and an Adjust added to the length value to
// get the body's size (PostgreSQL's length counts itself: -4). The zero
// value is frameloop's own format: a 4-byte little-endian length, then
// the body. Config.MaxMessage bounds the body.
//
// ParseFraming reads the daemon's --framing syntax: a preset such as
// "u32be", "varint", "mqtt", "grpc" or "mysql" (FramingPresets lists
// them), or a list such as "length=2,order=be,adjust=-2".
type Framing = framing.Spec

// LengthVarint as Framing.Length selects a varint length field.
const LengthVarint = framing.LengthVarint

// ParseFraming parses a framing description: a preset name, or
// comma-separated key=value pairs (length, order, offset, adjust,
// varint-max). Its errors are one line.
func ParseFraming(spec string) (Framing, error) { return framing.ParseSpec(spec) }

// FramingPresets lists the preset names ParseFraming accepts.
func FramingPresets() []string { return framing.Presets() }

// Frame is one frame as it arrived: see Conn.Frame. Its slices point into
// a buffer the loop reuses, and are valid only until OnFrame returns.
type Frame struct {
	Prefix []byte // the Framing.Offset bytes before the length field
	Body   []byte // what the length field announces (the payload OnFrame gets)
	Raw    []byte // the whole frame: prefix, length field and body, as received
}

// Frame returns the frame being delivered, from inside OnFrame: its
// prefix, its body, and its bytes exactly as they arrived (to forward or
// echo them unchanged). Called anywhere else — after OnFrame returned, or
// for another connection — it returns the zero Frame; it must be called
// on the loop's goroutine.
func (c *Conn) Frame() Frame {
	l := c.st.l
	if l.cur != c || l.curRaw == nil {
		return Frame{}
	}
	raw := l.curRaw
	_, h, _, _ := l.format.Next(raw) // cheaper than keeping h for every frame
	return Frame{Prefix: raw[:l.format.Offset()], Body: raw[h:], Raw: raw}
}
