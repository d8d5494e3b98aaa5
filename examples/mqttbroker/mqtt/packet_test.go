package mqtt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// bld builds packet bodies: B.s("MQTT").u8(4).u16(60)...
type bld []byte

var B bld

func (b bld) u8(v ...byte) bld   { return append(b[:len(b):len(b)], v...) }
func (b bld) u16(v uint16) bld   { return binary.BigEndian.AppendUint16(b[:len(b):len(b)], v) }
func (b bld) s(v string) bld     { return append(b.u16(uint16(len(v))), v...) }
func (b bld) raw(v string) bld   { return append(b[:len(b):len(b)], v...) }
func (b bld) cat(v []byte) bld   { return append(b[:len(b):len(b)], v...) }
func (b bld) bytes() []byte      { return []byte(b) }
func (b bld) plus(v byte) []byte { return []byte(b.u8(v)) }

// connect is a CONNECT body with protocol "MQTT" level 4, flags, keep alive
// 60, then rest.
func connect(flags byte, rest bld) bld { return B.s("MQTT").u8(4, flags).u16(60).cat(rest) }

// show renders a decoded packet, the fields of its type only, so that tests
// compare packets by value (nil and empty slices alike).
func show(p Packet) string {
	s := fmt.Sprintf("type=%d", p.Type)
	switch p.Type {
	case TypeConnect:
		c := p.Connect
		s += fmt.Sprintf(" clean=%t keepalive=%d client=%q", c.CleanSession, c.KeepAlive, c.ClientID)
		if c.Will {
			s += fmt.Sprintf(" will=qos%d,retain=%t,%q,%q", c.WillQoS, c.WillRetain, c.WillTopic, c.WillMessage)
		}
		if c.HasUsername {
			s += fmt.Sprintf(" user=%q", c.Username)
		}
		if c.HasPassword {
			s += fmt.Sprintf(" pass=%q", c.Password)
		}
	case TypePublish:
		q := p.Publish
		s += fmt.Sprintf(" dup=%t qos=%d retain=%t topic=%q id=%d payload=%q", q.Dup, q.QoS, q.Retain, q.Topic, q.PacketID, q.Payload)
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		s += fmt.Sprintf(" id=%d", p.PacketID)
	case TypeSubscribe, TypeUnsubscribe:
		s += fmt.Sprintf(" id=%d", p.PacketID)
		for f, q := range p.Filters.All() {
			s += fmt.Sprintf(" %q:%d", f, q)
		}
	}
	return s
}

// encodeClient encodes what Decode decodes, the packets a client sends; the
// package itself only encodes PUBLISH and PUBACK of those.
func encodeClient(p Packet) (byte, []byte) {
	switch p.Type {
	case TypeConnect:
		c := p.Connect
		flags := bit(c.CleanSession)<<1 | bit(c.Will)<<2 | c.WillQoS<<3 | bit(c.WillRetain)<<5 | bit(c.HasPassword)<<6 | bit(c.HasUsername)<<7
		b := B.s("MQTT").u8(4, flags).u16(c.KeepAlive).s(string(c.ClientID))
		if c.Will {
			b = b.s(string(c.WillTopic)).s(string(c.WillMessage))
		}
		if c.HasUsername {
			b = b.s(string(c.Username))
		}
		if c.HasPassword {
			b = b.s(string(c.Password))
		}
		return header(TypeConnect), b
	case TypePublish:
		return AppendPublishBody(nil, p.Publish)
	case TypePuback:
		return AppendPubackBody(nil, p.PacketID)
	case TypePubrec, TypePubrel, TypePubcomp:
		return header(p.Type), B.u16(p.PacketID)
	case TypeSubscribe, TypeUnsubscribe:
		b := B.u16(p.PacketID)
		for f, q := range p.Filters.All() {
			if b = b.s(string(f)); p.Type == TypeSubscribe {
				b = b.u8(q)
			}
		}
		return header(p.Type), b
	}
	return header(p.Type), nil // PINGREQ, DISCONNECT
}

type decodeCase struct {
	name  string
	first byte
	body  []byte
	want  string // show(decoded), or "" when err is set
	err   error
}

var decodeValid = []decodeCase{
	{"connect", 0x10, connect(0x02, B.s("c1")), `type=1 clean=true keepalive=60 client="c1"`, nil},
	{"connect empty client id, clean session (3.1.3.1)", 0x10, connect(0x02, B.s("")), `type=1 clean=true keepalive=60 client=""`, nil},
	{"connect no clean session", 0x10, connect(0x00, B.s("c1")), `type=1 clean=false keepalive=60 client="c1"`, nil},
	{"connect will, user, password", 0x10, connect(0x02|0x04|0x08|0x20|0x40|0x80, B.s("c1").s("w/t").s("bye").s("u").s("p\x00w")),
		`type=1 clean=true keepalive=60 client="c1" will=qos1,retain=true,"w/t","bye" user="u" pass="p\x00w"`, nil},
	{"connect will qos 2, empty message", 0x10, connect(0x02|0x04|0x10, B.s("c1").s("w").s("")),
		`type=1 clean=true keepalive=60 client="c1" will=qos2,retain=false,"w",""`, nil},
	{"connect username only, empty", 0x10, connect(0x82, B.s("c1").s("")), `type=1 clean=true keepalive=60 client="c1" user=""`, nil},
	{"connect utf-8 client id", 0x10, connect(0x02, B.s("é\ufeff𝄞")), `type=1 clean=true keepalive=60 client="é\ufeff𝄞"`, nil},
	{"publish qos 0", 0x30, B.s("a/b").raw("hello"), `type=3 dup=false qos=0 retain=false topic="a/b" id=0 payload="hello"`, nil},
	{"publish qos 0 retain, empty payload", 0x31, B.s("a/b"), `type=3 dup=false qos=0 retain=true topic="a/b" id=0 payload=""`, nil},
	{"publish qos 1", 0x32, B.s("a/b").u16(10).raw("hi"), `type=3 dup=false qos=1 retain=false topic="a/b" id=10 payload="hi"`, nil},
	{"publish qos 1 dup retain", 0x3b, B.s("a").u16(0xffff).raw("x"), `type=3 dup=true qos=1 retain=true topic="a" id=65535 payload="x"`, nil},
	{"publish qos 2", 0x34, B.s("a").u16(2), `type=3 dup=false qos=2 retain=false topic="a" id=2 payload=""`, nil},
	{"publish $ topic, empty levels, utf-8", 0x30, B.s("$SYS//é/ "), `type=3 dup=false qos=0 retain=false topic="$SYS//é/ " id=0 payload=""`, nil},
	{"puback", 0x40, B.u16(1), `type=4 id=1`, nil},
	{"pubrec", 0x50, B.u16(2), `type=5 id=2`, nil},
	{"pubrel", 0x62, B.u16(3), `type=6 id=3`, nil},
	{"pubcomp", 0x70, B.u16(4), `type=7 id=4`, nil},
	{"subscribe", 0x82, B.u16(1).s("a/+/c").u8(1).s("#").u8(0).s("sport/tennis/#").u8(2).s("+").u8(1).s("/+/").u8(0),
		`type=8 id=1 "a/+/c":1 "#":0 "sport/tennis/#":2 "+":1 "/+/":0`, nil},
	{"unsubscribe", 0xa2, B.u16(2).s("a").s("b/#"), `type=10 id=2 "a":0 "b/#":0`, nil},
	{"pingreq", 0xc0, nil, `type=12`, nil},
	{"disconnect", 0xe0, B.bytes(), `type=14`, nil},
}

var decodeMalformed = []decodeCase{
	// 2.2.1: reserved types, and those only a server sends.
	{name: "type 0", first: 0x00, err: errType},
	{name: "type 15", first: 0xf0, err: errType},
	{name: "connack from a client", first: 0x20, body: B.u8(0, 0), err: errType},
	{name: "suback from a client", first: 0x90, body: B.u16(1).u8(0), err: errType},
	{name: "unsuback from a client", first: 0xb0, body: B.u16(1), err: errType},
	{name: "pingresp from a client", first: 0xd0, err: errType},
	// 2.2.2: flags for the type.
	{name: "connect flags", first: 0x11, body: connect(0x02, B.s("c1")), err: errFlags},
	{name: "puback flags", first: 0x42, body: B.u16(1), err: errFlags},
	{name: "pubrec flags", first: 0x52, body: B.u16(1), err: errFlags},
	{name: "pubrel flags 0", first: 0x60, body: B.u16(1), err: errFlags},
	{name: "pubcomp flags", first: 0x71, body: B.u16(1), err: errFlags},
	{name: "subscribe flags 0", first: 0x80, body: B.u16(1).s("a").u8(0), err: errFlags},
	{name: "subscribe flags 3", first: 0x83, body: B.u16(1).s("a").u8(0), err: errFlags},
	{name: "unsubscribe flags 0", first: 0xa0, body: B.u16(1).s("a"), err: errFlags},
	{name: "pingreq flags", first: 0xc1, err: errFlags},
	{name: "disconnect flags", first: 0xe8, err: errFlags},
	{name: "publish qos 3", first: 0x36, body: B.s("a").u16(1), err: errFlags},
	{name: "publish dup with qos 0", first: 0x38, body: B.s("a"), err: errFlags},
	// CONNECT (3.1).
	{name: "connect empty", first: 0x10, err: errShort},
	{name: "connect protocol name", first: 0x10, body: B.s("MQTX").u8(4, 2).u16(60).s("c1"), err: errProtocol},
	{name: "connect protocol name lower case", first: 0x10, body: B.s("mqtt").u8(4, 2).u16(60).s("c1"), err: errProtocol},
	{name: "connect level 3", first: 0x10, body: B.s("MQTT").u8(3, 2).u16(60).s("c1"), err: ErrVersion},
	{name: "connect level 5", first: 0x10, body: B.s("MQTT").u8(5, 2).u16(60).u8(0).s("c1"), err: ErrVersion},
	{name: "connect MQTT 3.1", first: 0x10, body: B.s("MQIsdp").u8(3, 2).u16(60).s("c1"), err: ErrVersion},
	{name: "connect reserved flag", first: 0x10, body: connect(0x03, B.s("c1")), err: errConnFlags},
	{name: "connect will qos 3", first: 0x10, body: connect(0x1e, B.s("c1").s("w").s("m")), err: errConnFlags},
	{name: "connect will qos without will", first: 0x10, body: connect(0x0a, B.s("c1")), err: errConnFlags},
	{name: "connect will retain without will", first: 0x10, body: connect(0x22, B.s("c1")), err: errConnFlags},
	{name: "connect password without username", first: 0x10, body: connect(0x42, B.s("c1").s("p")), err: errConnFlags},
	{name: "connect empty client id, no clean session", first: 0x10, body: connect(0x00, B.s("")), err: ErrClientID},
	{name: "connect client id runs past body", first: 0x10, body: connect(0x02, B.u16(3).raw("c1")), err: errShort},
	{name: "connect no keep alive", first: 0x10, body: B.s("MQTT").u8(4, 2).u8(0), err: errShort},
	{name: "connect client id invalid utf-8", first: 0x10, body: connect(0x02, B.s("c\xff")), err: errUTF8},
	{name: "connect client id surrogate", first: 0x10, body: connect(0x02, B.s("\xed\xa0\x80")), err: errUTF8},
	{name: "connect client id overlong", first: 0x10, body: connect(0x02, B.s("\xc0\xaf")), err: errUTF8},
	{name: "connect client id U+0000", first: 0x10, body: connect(0x02, B.s("c\x001")), err: errUTF8},
	{name: "connect will missing", first: 0x10, body: connect(0x06, B.s("c1")), err: errShort},
	{name: "connect will message missing", first: 0x10, body: connect(0x06, B.s("c1").s("w")), err: errShort},
	{name: "connect will topic wildcard", first: 0x10, body: connect(0x06, B.s("c1").s("w/#").s("m")), err: errTopic},
	{name: "connect will topic empty", first: 0x10, body: connect(0x06, B.s("c1").s("").s("m")), err: errTopic},
	{name: "connect username missing", first: 0x10, body: connect(0x82, B.s("c1")), err: errShort},
	{name: "connect username invalid utf-8", first: 0x10, body: connect(0x82, B.s("c1").s("\xff")), err: errUTF8},
	{name: "connect password missing", first: 0x10, body: connect(0xc2, B.s("c1").s("u")), err: errShort},
	{name: "connect password runs past body", first: 0x10, body: connect(0xc2, B.s("c1").s("u").u16(9).raw("pw")), err: errShort},
	{name: "connect trailing byte", first: 0x10, body: connect(0x02, B.s("c1")).plus(0), err: errTrailing},
	{name: "connect trailing field", first: 0x10, body: connect(0x02, B.s("c1").s("u")), err: errTrailing},
	// PUBLISH (3.3).
	{name: "publish empty", first: 0x30, err: errShort},
	{name: "publish topic runs past body", first: 0x30, body: B.u16(4).raw("a/b"), err: errShort},
	{name: "publish empty topic", first: 0x30, body: B.s("").raw("x"), err: errTopic},
	{name: "publish topic +", first: 0x30, body: B.s("a/+").raw("x"), err: errTopic},
	{name: "publish topic #", first: 0x30, body: B.s("a/#"), err: errTopic},
	{name: "publish topic wildcard inside level", first: 0x32, body: B.s("a/b#c").u16(1), err: errTopic},
	{name: "publish topic invalid utf-8", first: 0x30, body: B.s("a/\xc3"), err: errTopic},
	{name: "publish topic U+0000", first: 0x30, body: B.s("a\x00b"), err: errTopic},
	{name: "publish qos 1 no packet id", first: 0x32, body: B.s("a/b"), err: errShort},
	{name: "publish qos 1 half a packet id", first: 0x32, body: B.s("a/b").u8(1), err: errShort},
	{name: "publish qos 1 packet id 0", first: 0x32, body: B.s("a/b").u16(0).raw("x"), err: errPacketID},
	{name: "publish qos 2 packet id 0", first: 0x34, body: B.s("a/b").u16(0), err: errPacketID},
	// PUBACK, PUBREC, PUBREL, PUBCOMP (3.4 to 3.7).
	{name: "puback empty", first: 0x40, err: errShort},
	{name: "puback short", first: 0x40, body: B.u8(1), err: errShort},
	{name: "puback packet id 0", first: 0x40, body: B.u16(0), err: errPacketID},
	{name: "puback trailing", first: 0x40, body: B.u16(1).u8(0), err: errTrailing},
	{name: "pubrec packet id 0", first: 0x50, body: B.u16(0), err: errPacketID},
	{name: "pubrel trailing", first: 0x62, body: B.u16(1).u8(0), err: errTrailing},
	{name: "pubcomp short", first: 0x70, body: B.u8(0), err: errShort},
	// SUBSCRIBE (3.8).
	{name: "subscribe empty", first: 0x82, err: errShort},
	{name: "subscribe packet id 0", first: 0x82, body: B.u16(0).s("a").u8(0), err: errPacketID},
	{name: "subscribe no filter", first: 0x82, body: B.u16(1), err: errNoFilters},
	{name: "subscribe empty filter", first: 0x82, body: B.u16(1).s("").u8(0), err: errFilter},
	{name: "subscribe # not last", first: 0x82, body: B.u16(1).s("a/#/b").u8(0), err: errFilter},
	{name: "subscribe # not alone", first: 0x82, body: B.u16(1).s("a/b#").u8(0), err: errFilter},
	{name: "subscribe ##", first: 0x82, body: B.u16(1).s("##").u8(0), err: errFilter},
	{name: "subscribe + not alone, before", first: 0x82, body: B.u16(1).s("a+/b").u8(0), err: errFilter},
	{name: "subscribe + not alone, after", first: 0x82, body: B.u16(1).s("a/+b").u8(0), err: errFilter},
	{name: "subscribe ++", first: 0x82, body: B.u16(1).s("++").u8(0), err: errFilter},
	{name: "subscribe second filter bad", first: 0x82, body: B.u16(1).s("a").u8(0).s("b/#/").u8(0), err: errFilter},
	{name: "subscribe filter invalid utf-8", first: 0x82, body: B.u16(1).s("a/\xff").u8(0), err: errFilter},
	{name: "subscribe filter U+0000", first: 0x82, body: B.u16(1).s("a/\x00").u8(0), err: errFilter},
	{name: "subscribe filter runs past body", first: 0x82, body: B.u16(1).u16(5).raw("a/b"), err: errShort},
	{name: "subscribe no qos", first: 0x82, body: B.u16(1).s("a/b"), err: errShort},
	{name: "subscribe second qos missing", first: 0x82, body: B.u16(1).s("a").u8(1).s("b"), err: errShort},
	{name: "subscribe qos 3", first: 0x82, body: B.u16(1).s("a").u8(3), err: errQoS},
	{name: "subscribe qos reserved bits", first: 0x82, body: B.u16(1).s("a").u8(0x81), err: errQoS},
	// UNSUBSCRIBE (3.10).
	{name: "unsubscribe empty", first: 0xa2, err: errShort},
	{name: "unsubscribe packet id 0", first: 0xa2, body: B.u16(0).s("a"), err: errPacketID},
	{name: "unsubscribe no filter", first: 0xa2, body: B.u16(1), err: errNoFilters},
	{name: "unsubscribe empty filter", first: 0xa2, body: B.u16(1).s(""), err: errFilter},
	{name: "unsubscribe bad filter", first: 0xa2, body: B.u16(1).s("a/#/b"), err: errFilter},
	{name: "unsubscribe trailing byte", first: 0xa2, body: B.u16(1).s("a").u8(0), err: errShort},
	// PINGREQ, DISCONNECT (3.12, 3.14).
	{name: "pingreq body", first: 0xc0, body: B.u8(0), err: errTrailing},
	{name: "disconnect body", first: 0xe0, body: B.u8(0, 0), err: errTrailing},
}

func TestDecode(t *testing.T) {
	for _, tc := range append(decodeValid, decodeMalformed...) {
		t.Run(tc.name, func(t *testing.T) {
			before := bytes.Clone(tc.body)
			p, err := Decode(tc.first, tc.body)
			if !bytes.Equal(before, tc.body) {
				t.Fatalf("Decode modified its input")
			}
			if err != tc.err {
				t.Fatalf("Decode(%#x, %q): error %v, want %v", tc.first, tc.body, err, tc.err)
			}
			if err != nil {
				if p.Type != Type(tc.first>>4) || show(p) != show(Packet{Type: p.Type}) {
					t.Errorf("on error Decode returned %s", show(p))
				}
				if err != ErrVersion && err != ErrClientID && !errors.Is(err, ErrMalformed) {
					t.Errorf("%v does not wrap ErrMalformed", err)
				}
				return
			}
			if got := show(p); got != tc.want {
				t.Errorf("Decode(%#x, %q)\n got %s\nwant %s", tc.first, tc.body, got, tc.want)
			}
		})
	}
}

// TestDecodeTruncated cuts every valid packet at every length short of its
// own: each cut is an error, never a panic, and those that are not errShort
// say why.
func TestDecodeTruncated(t *testing.T) {
	for _, tc := range decodeValid {
		for n := 0; n < len(tc.body); n++ {
			_, err := Decode(tc.first, tc.body[:n])
			if t := Type(tc.first >> 4); err == nil && (t == TypePublish || t == TypeSubscribe || t == TypeUnsubscribe) {
				continue // a shorter payload, or fewer filters
			}
			if err != errShort && err != errNoFilters {
				t.Errorf("%s cut to %d bytes: %v, want %v", tc.name, n, err, errShort)
			}
		}
	}
}

// TestDecodeAliases: decoded values point into the body, not copies.
func TestDecodeAliases(t *testing.T) {
	body := B.s("a/b").u16(7).raw("payload").bytes()
	p, err := Decode(0x32, body)
	if err != nil {
		t.Fatal(err)
	}
	if &p.Publish.Topic[0] != &body[2] || &p.Publish.Payload[0] != &body[7] {
		t.Error("Publish does not alias the body")
	}
	// The framing layer's buffer goes on past the body: appending to a
	// decoded value must not write there.
	const next = "next frame"
	pub := B.s("a/b").u16(7).raw("payload" + next)
	conn := connect(0xe6, B.s("c").s("w/t").s("msg").s("user").s("pass").raw(next))
	for _, tc := range []struct {
		first byte
		body  []byte
	}{{0x32, pub[:len(pub)-len(next)]}, {0x10, conn[:len(conn)-len(next)]}} {
		p, err := Decode(tc.first, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range [][]byte{p.Publish.Topic, p.Publish.Payload, p.Connect.ClientID, p.Connect.WillTopic,
			p.Connect.WillMessage, p.Connect.Username, p.Connect.Password} {
			if cap(v) != len(v) {
				t.Errorf("%q has capacity past its end", v)
			}
		}
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	for _, tc := range decodeValid {
		n := testing.AllocsPerRun(100, func() {
			p, _ := Decode(tc.first, tc.body)
			for f, q := range p.Filters.All() {
				_, _ = f, q
			}
		})
		if n != 0 {
			t.Errorf("%s: %v allocations", tc.name, n)
		}
	}
}

// TestClientRoundTrip: re-encoding what decoded gives back the same bytes.
func TestClientRoundTrip(t *testing.T) {
	for _, tc := range decodeValid {
		p, err := Decode(tc.first, tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if first, body := encodeClient(p); first != tc.first || !bytes.Equal(body, tc.body) {
			t.Errorf("%s: re-encoded %#x %q, want %#x %q", tc.name, first, body, tc.first, tc.body)
		}
	}
}

func TestFiltersAllStops(t *testing.T) {
	p, err := Decode(0x82, B.u16(1).s("a").u8(1).s("b").u8(2).s("c").u8(0))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for f, q := range p.Filters.All() {
		if got = append(got, fmt.Sprintf("%s:%d", f, q)); len(got) == 2 {
			break
		}
	}
	if strings.Join(got, " ") != "a:1 b:2" {
		t.Errorf("got %v", got)
	}
}
