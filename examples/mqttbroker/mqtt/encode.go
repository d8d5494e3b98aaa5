package mqtt

import "encoding/binary"

// Connect return codes, the second byte of a CONNACK (3.2.2.3).
const (
	Accepted byte = iota
	RefusedVersion
	RefusedIdentifier
	RefusedServerUnavailable
	RefusedBadCredentials
	RefusedNotAuthorized
)

// SubackFailure is the SUBACK return code of a refused filter (3.9.3).
const SubackFailure byte = 0x80

// MaxRemaining is the largest Remaining Length, hence body (2.2.3).
const MaxRemaining = 268_435_455

// The AppendXxxBody functions return a packet's first byte and dst with its
// body appended (pass scratch[:0] to get the body alone), for a framing layer
// that encodes the Remaining Length itself. Like AppendPacket and
// AppendPublish, they allocate nothing when dst has room.

// AppendConnackBody: CONNACK (3.2). Session present is sent only with
// Accepted [MQTT-3.2.2-4].
func AppendConnackBody(dst []byte, sessionPresent bool, code byte) (byte, []byte) {
	return header(TypeConnack), append(dst, bit(sessionPresent && code == Accepted), code)
}

// AppendPublishBody: PUBLISH (3.3).
func AppendPublishBody(dst []byte, p Publish) (byte, []byte) {
	return p.first(), appendPublish(dst, p)
}

// AppendPubackBody: PUBACK (3.4).
func AppendPubackBody(dst []byte, id uint16) (byte, []byte) {
	return header(TypePuback), binary.BigEndian.AppendUint16(dst, id)
}

// AppendSubackBody: SUBACK with one return code per filter of the SUBSCRIBE,
// in its order: the granted QoS or SubackFailure (3.9).
func AppendSubackBody(dst []byte, id uint16, codes []byte) (byte, []byte) {
	return header(TypeSuback), append(binary.BigEndian.AppendUint16(dst, id), codes...)
}

// AppendUnsubackBody: UNSUBACK (3.11).
func AppendUnsubackBody(dst []byte, id uint16) (byte, []byte) {
	return header(TypeUnsuback), binary.BigEndian.AppendUint16(dst, id)
}

// AppendPingrespBody: PINGRESP (3.13), whose body is empty.
func AppendPingrespBody(dst []byte) (byte, []byte) { return header(TypePingresp), dst }

// AppendPacket appends the complete packet: first, the Remaining Length of
// body (2.2.3) and body, which must not overlap dst's spare capacity. It
// panics if body is longer than MaxRemaining.
func AppendPacket(dst []byte, first byte, body []byte) []byte {
	return append(appendHeader(dst, first, len(body)), body...)
}

// AppendPublish appends a complete PUBLISH packet without an intermediate
// copy, to be written as-is. It panics if the topic is longer than 65535
// bytes or the body than MaxRemaining, which no decoded Publish is.
func AppendPublish(dst []byte, p Publish) []byte {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	return appendPublish(appendHeader(dst, p.first(), n), p)
}

// PublishPacket is a complete PUBLISH encoded once to be written to many
// subscribers. For QoS > 0, Bytes[IDOffset:IDOffset+2] is the packet id, at
// IDOffset = 1 + (1 to 4 bytes of Remaining Length) + 2 + len(Topic); set it
// per subscriber with SetPacketID before each write (the framing layer copies
// what it is given). A resend sets DUP, Bytes[0] |= 0x08, in its own copy.
type PublishPacket struct {
	Bytes    []byte
	IDOffset int // 0 for QoS 0
}

// NewPublishPacket encodes p into buf[:0], reusing buf's capacity.
func NewPublishPacket(buf []byte, p Publish) PublishPacket {
	pp := PublishPacket{Bytes: AppendPublish(buf[:0], p)}
	if p.QoS > 0 {
		pp.IDOffset = len(pp.Bytes) - len(p.Payload) - 2
	}
	return pp
}

// SetPacketID patches the packet id in place. It panics for QoS 0.
func (pp PublishPacket) SetPacketID(id uint16) {
	if pp.IDOffset == 0 {
		panic("mqtt: SetPacketID on a QoS 0 PUBLISH")
	}
	binary.BigEndian.PutUint16(pp.Bytes[pp.IDOffset:], id)
}

// first is the PUBLISH first byte with the DUP, QoS and RETAIN flags (3.3.1).
func (p Publish) first() byte {
	return header(TypePublish) | bit(p.Dup)<<3 | p.QoS&3<<1 | bit(p.Retain)
}

func bit(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func appendPublish(dst []byte, p Publish) []byte {
	if len(p.Topic) > 0xffff {
		panic("mqtt: topic longer than 65535 bytes")
	}
	dst = append(binary.BigEndian.AppendUint16(dst, uint16(len(p.Topic))), p.Topic...)
	if p.QoS > 0 {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	return append(dst, p.Payload...)
}

// appendHeader appends first and n as a Remaining Length: 7 bits a byte,
// least significant first, the high bit set on all but the last (2.2.3).
func appendHeader(dst []byte, first byte, n int) []byte {
	if n < 0 || n > MaxRemaining {
		panic("mqtt: body longer than MaxRemaining")
	}
	dst = append(dst, first)
	for ; n >= 0x80; n >>= 7 {
		dst = append(dst, byte(n)|0x80)
	}
	return append(dst, byte(n))
}
