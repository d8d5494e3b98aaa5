// Package mqtt is the MQTT 3.1.1 codec and topic index of the mqttbroker
// example. A packet travels as the first byte of its fixed header and its
// body, the Remaining Length bytes after it (spec 2.2); the framing layer
// encodes and decodes that length. Decoded values alias the body they come
// from: copy what you keep. Section numbers are the OASIS standard's.
package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"unicode/utf8"
)

// Type is a control packet type, the high nibble of the first byte (2.2.1).
type Type byte

// The control packet types (2.2.1); 0 and 15 are reserved.
const (
	TypeConnect Type = iota + 1
	TypeConnack
	TypePublish
	TypePuback
	TypePubrec
	TypePubrel
	TypePubcomp
	TypeSubscribe
	TypeSuback
	TypeUnsubscribe
	TypeUnsuback
	TypePingreq
	TypePingresp
	TypeDisconnect
)

var (
	// ErrMalformed is wrapped by every decoding error but the two below: close (4.8).
	ErrMalformed = errors.New("mqtt: malformed packet")
	// ErrVersion: a CONNECT not of level 4; answer CONNACK RefusedVersion, close [MQTT-3.1.2-2].
	ErrVersion = errors.New("mqtt: unacceptable protocol version")
	// ErrClientID: an empty client id without clean session; answer CONNACK RefusedIdentifier, close [MQTT-3.1.3-8].
	ErrClientID = errors.New("mqtt: client identifier rejected")

	errType      = malformed("reserved packet type, or one only a server sends")
	errFlags     = malformed("invalid fixed header flags")
	errShort     = malformed("body too short")
	errTrailing  = malformed("trailing bytes")
	errUTF8      = malformed("string not well-formed UTF-8, or holding U+0000")
	errTopic     = malformed("invalid topic name")
	errFilter    = malformed("invalid topic filter")
	errNoFilters = malformed("no topic filter")
	errQoS       = malformed("invalid requested QoS")
	errPacketID  = malformed("packet identifier 0")
	errProtocol  = malformed("protocol name not MQTT")
	errConnFlags = malformed("invalid connect flags")
)

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// Packet is a decoded client-to-server packet.
type Packet struct {
	Type     Type
	PacketID uint16  // PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE
	Connect  Connect // CONNECT
	Publish  Publish // PUBLISH
	Filters  Filters // SUBSCRIBE, UNSUBSCRIBE
}

// Connect is a CONNECT packet (3.1).
type Connect struct {
	CleanSession bool
	KeepAlive    uint16 // seconds, 0 for none (3.1.2.10)
	ClientID     []byte // empty only with CleanSession: the broker names the client (3.1.3.1)
	// Will says the connection has a Will Message (3.1.2.5), which the Will fields describe.
	Will                     bool
	WillQoS                  byte
	WillRetain               bool
	WillTopic, WillMessage   []byte
	HasUsername, HasPassword bool
	Username, Password       []byte
}

// Publish is a PUBLISH packet (3.3).
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    []byte
	PacketID uint16 // QoS > 0 only
	Payload  []byte
}

// Filters is the validated payload of a SUBSCRIBE or UNSUBSCRIBE (3.8.3, 3.10.3).
type Filters struct {
	b   []byte
	qos bool // SUBSCRIBE: a requested QoS byte follows each filter
}

// All yields each topic filter, in packet order, with its requested QoS (0
// for UNSUBSCRIBE).
func (f Filters) All() iter.Seq2[[]byte, byte] {
	return func(yield func([]byte, byte) bool) {
		for r := (reader{b: f.b}); len(r.b) > 0; {
			filter, qos := r.field(), 0
			if f.qos {
				qos = r.num(1)
			}
			if !yield(filter, byte(qos)) {
				return
			}
		}
	}
}

// header is the first byte of a packet of type t with the flags Table 2.2
// fixes, which is all but PUBLISH's.
func header(t Type) byte { return byte(t)<<4 | fixedFlags[t&15] }

var fixedFlags = [16]byte{TypePubrel: 2, TypeSubscribe: 2, TypeUnsubscribe: 2}

// Decode decodes a packet a client sent. Every malformed input is an error,
// after which only the Packet's Type is set.
func Decode(first byte, body []byte) (Packet, error) {
	p, r := Packet{Type: Type(first >> 4)}, reader{b: body}
	if p.Type != TypePublish && first != header(p.Type) {
		return Packet{Type: p.Type}, errFlags // [MQTT-2.2.2-2]
	}
	switch p.Type {
	case TypePublish:
		p.Publish = r.publish(first)
	case TypeConnect:
		p.Connect = r.connect()
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		p.PacketID = r.id() // 3.4.2 to 3.7.2
	case TypeSubscribe, TypeUnsubscribe:
		p.PacketID = r.id() // 3.8.2, 3.10.2
		p.Filters = Filters{b: r.b, qos: p.Type == TypeSubscribe}
		if len(r.b) == 0 {
			r.fail(errNoFilters) // [MQTT-3.8.3-3], [MQTT-3.10.3-2]
		}
		for r.err == nil && len(r.b) > 0 {
			r.text(validFilter, errFilter) // 3.8.3, 3.10.3, 4.7
			if p.Filters.qos && r.num(1) > 2 {
				r.fail(errQoS) // reserved bits or QoS 3 [MQTT-3.8.3-4]
			}
		}
	case TypePingreq, TypeDisconnect: // no body (3.12, 3.14)
	default:
		return Packet{Type: p.Type}, errType // reserved, or only a server sends it (2.2.1)
	}
	if len(r.b) > 0 {
		r.fail(errTrailing)
	}
	if p.Type == TypeConnect && len(p.Connect.ClientID) == 0 && !p.Connect.CleanSession {
		r.fail(ErrClientID) // 3.1.3.1 [MQTT-3.1.3-8]
	}
	if r.err != nil {
		return Packet{Type: p.Type}, r.err
	}
	return p, nil
}

func (r *reader) connect() (c Connect) {
	name, level := r.field(), r.num(1) // 3.1.2.1, 3.1.2.2
	if r.err == nil && (string(name) == "MQIsdp" || string(name) == "MQTT" && level != 4) {
		r.fail(ErrVersion) // MQTT 3.1's name, or another level
	}
	if string(name) != "MQTT" {
		r.fail(errProtocol) // [MQTT-3.1.2-1]
	}
	flags := r.num(1) // 3.1.2.3
	c.KeepAlive = uint16(r.num(2))
	c.CleanSession, c.Will, c.WillQoS = flags&0x02 != 0, flags&0x04 != 0, byte(flags>>3&3)
	c.WillRetain, c.HasPassword, c.HasUsername = flags&0x20 != 0, flags&0x40 != 0, flags&0x80 != 0
	if flags&0x01 != 0 || c.WillQoS == 3 || !c.Will && (c.WillQoS != 0 || c.WillRetain) || c.HasPassword && !c.HasUsername {
		r.fail(errConnFlags) // [MQTT-3.1.2-3], [MQTT-3.1.2-14], [MQTT-3.1.2-13,15], [MQTT-3.1.2-22]
	}
	c.ClientID = r.text(validText, errUTF8) // 3.1.3.1
	if c.Will {
		c.WillTopic, c.WillMessage = r.text(validTopic, errTopic), r.field() // 3.1.3.2, 3.1.3.3
	}
	if c.HasUsername {
		c.Username = r.text(validText, errUTF8) // 3.1.3.4
	}
	if c.HasPassword {
		c.Password = r.field() // 3.1.3.5: binary data
	}
	return c
}

func (r *reader) publish(first byte) (p Publish) {
	p.Dup, p.QoS, p.Retain = first&0x08 != 0, first>>1&3, first&0x01 != 0
	if p.QoS == 3 || p.Dup && p.QoS == 0 {
		r.fail(errFlags) // [MQTT-3.3.1-4], [MQTT-3.3.1-2]
	}
	p.Topic = r.text(validTopic, errTopic) // 3.3.2.1
	if p.QoS > 0 {
		p.PacketID = r.id() // 3.3.2.2
	}
	p.Payload, r.b = r.b[:len(r.b):len(r.b)], nil // 3.3.3: the rest, maybe empty
	return p
}

// reader consumes a body. Its first failure sticks and later reads return
// zero values, so a decoder reads on and checks err once. What it returns
// has no capacity past its end: appending to it cannot overwrite the body.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err, r.b = err, nil
	}
}

func (r *reader) take(n int) []byte {
	if len(r.b) < n {
		r.fail(errShort)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// num reads an n-byte big-endian integer (1.5.2), or 0 past the body.
func (r *reader) num(n int) (v int) {
	for _, b := range r.take(n) {
		v = v<<8 | int(b)
	}
	return v
}

// id reads a packet identifier, which is never 0 [MQTT-2.3.1-1].
func (r *reader) id() uint16 {
	v := r.num(2)
	if v == 0 {
		r.fail(errPacketID)
	}
	return uint16(v)
}

// field reads two length bytes and that many bytes (1.5.3, 3.1.3.3).
func (r *reader) field() []byte { return r.take(r.num(2)) }

// text reads a UTF-8 string (1.5.3) that valid accepts, else fails with err.
func (r *reader) text(valid func([]byte) bool, err error) []byte {
	s := r.field()
	if r.err == nil && !valid(s) {
		r.fail(err)
	}
	return s
}

// validText: well-formed UTF-8 (utf8.Valid rejects the surrogates
// U+D800-U+DFFF too) without U+0000 (1.5.3) [MQTT-1.5.3-1,2].
func validText(s []byte) bool { return utf8.Valid(s) && bytes.IndexByte(s, 0) < 0 }

// validTopic: a topic name has a character at least (4.7.3) and no
// wildcard [MQTT-3.3.2-2].
func validTopic(s []byte) bool { return len(s) > 0 && validText(s) && bytes.IndexAny(s, "+#") < 0 }

// validFilter: a topic filter has a character at least (4.7.3), '#' only
// last and alone in its level (4.7.1.2), '+' only alone in its level
// (4.7.1.3). Bytewise is safe: '/', '+', '#' never occur inside a UTF-8
// sequence.
func validFilter(f []byte) bool {
	for i, c := range f {
		if c == '#' && (i != len(f)-1 || i > 0 && f[i-1] != '/') ||
			c == '+' && (i > 0 && f[i-1] != '/' || i < len(f)-1 && f[i+1] != '/') {
			return false
		}
	}
	return len(f) > 0 && validText(f)
}
