package mqtt

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// split parses a complete packet: first byte, Remaining Length (2.2.3), body.
func split(t testing.TB, b []byte) (first byte, body, rest []byte) {
	t.Helper()
	if len(b) < 2 {
		t.Fatalf("packet of %d bytes", len(b))
	}
	n, mult, i := 0, 1, 1
	for ; ; i++ {
		if i > 4 || i >= len(b) {
			t.Fatalf("bad Remaining Length in %x", b)
		}
		n += int(b[i]&0x7f) * mult
		mult <<= 7
		if b[i]&0x80 == 0 {
			break
		}
	}
	if len(b) < i+1+n {
		t.Fatalf("packet %x shorter than its Remaining Length %d", b, n)
	}
	return b[0], b[i+1 : i+1+n], b[i+1+n:]
}

func TestServerPackets(t *testing.T) {
	for _, tc := range []struct {
		name string
		enc  func() (byte, []byte)
		want string // first byte and body, hex
	}{
		// The layouts of 3.2, 3.4, 3.9, 3.11 and 3.13.
		{"connack", func() (byte, []byte) { return AppendConnackBody(nil, false, Accepted) }, "20 0000"},
		{"connack session present", func() (byte, []byte) { return AppendConnackBody(nil, true, Accepted) }, "20 0100"},
		{"connack refused: no session present [MQTT-3.2.2-4]", func() (byte, []byte) { return AppendConnackBody(nil, true, RefusedVersion) }, "20 0001"},
		{"connack not authorized", func() (byte, []byte) { return AppendConnackBody(nil, false, RefusedNotAuthorized) }, "20 0005"},
		{"puback", func() (byte, []byte) { return AppendPubackBody(nil, 0x1234) }, "40 1234"},
		{"suback", func() (byte, []byte) { return AppendSubackBody(nil, 10, []byte{0, 1, SubackFailure}) }, "90 000a000180"},
		{"unsuback", func() (byte, []byte) { return AppendUnsubackBody(nil, 0xfffe) }, "b0 fffe"},
		{"pingresp", func() (byte, []byte) { return AppendPingrespBody(nil) }, "d0 "},
		// The example of 3.3.2.3: topic "a/b", packet id 10.
		{"publish qos 1", func() (byte, []byte) {
			return AppendPublishBody(nil, Publish{QoS: 1, Topic: []byte("a/b"), PacketID: 10, Payload: []byte("hi")})
		}, "32 0003612f62000a6869"},
		{"publish qos 0 retain", func() (byte, []byte) {
			return AppendPublishBody(nil, Publish{Retain: true, Topic: []byte("t"), PacketID: 99})
		}, "31 000174"},
		{"publish qos 1 dup", func() (byte, []byte) {
			return AppendPublishBody(nil, Publish{Dup: true, QoS: 1, Topic: []byte("t"), PacketID: 1})
		}, "3a 0001740001"},
	} {
		first, body := tc.enc()
		if got := fmt.Sprintf("%02x %x", first, body); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
		// The complete packet frames the same body.
		f, b, rest := split(t, AppendPacket([]byte("prefix"), first, body)[6:])
		if f != first || !bytes.Equal(b, body) || len(rest) != 0 {
			t.Errorf("%s: AppendPacket framed %02x %x %x", tc.name, f, b, rest)
		}
	}
}

// TestRemainingLength: Table 2.4's boundaries.
func TestRemainingLength(t *testing.T) {
	for n, want := range map[int]string{
		0: "00", 127: "7f", 128: "8001", 16383: "ff7f", 16384: "808001",
		2097151: "ffff7f", 2097152: "80808001", MaxRemaining: "ffffff7f",
	} {
		if got := fmt.Sprintf("%x", appendHeader(nil, 0x30, n)[1:]); got != want {
			t.Errorf("%d: %s, want %s", n, got, want)
		}
	}
	mustPanic(t, "Remaining Length over the maximum", func() { appendHeader(nil, 0x30, MaxRemaining+1) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

// TestPublishRoundTrip: what the encoders make, Decode reads back, whole or
// by (first, body), at every Remaining Length size.
func TestPublishRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 120, 200, 16380, 20000, 2100000} {
		for _, p := range []Publish{
			{Topic: []byte("a/b"), Payload: bytes.Repeat([]byte{'x'}, size)},
			{QoS: 1, Dup: true, Retain: true, Topic: []byte("$SYS/é"), PacketID: 65535, Payload: bytes.Repeat([]byte{0}, size)},
			{QoS: 2, Topic: []byte(strings.Repeat("/", 300)), PacketID: 1, Payload: bytes.Repeat([]byte{'y'}, size)},
		} {
			first, body, rest := split(t, AppendPublish(nil, p))
			f2, b2 := AppendPublishBody(nil, p)
			if first != f2 || !bytes.Equal(body, b2) || len(rest) != 0 {
				t.Fatalf("AppendPublish and AppendPublishBody disagree")
			}
			got, err := Decode(first, body)
			if want := (Packet{Type: TypePublish, Publish: p}); err != nil || show(got) != show(want) {
				t.Fatalf("decoded %s, %v; want %s", show(got), err, show(want))
			}
		}
	}
}

func TestPublishPacket(t *testing.T) {
	buf := make([]byte, 0, 512)
	for _, topic := range []string{"a", strings.Repeat("t", 200), strings.Repeat("t", 20000)} {
		p := Publish{QoS: 1, Topic: []byte(topic), PacketID: 1, Payload: []byte("payload")}
		pp := NewPublishPacket(buf, p)
		if !bytes.Equal(pp.Bytes, AppendPublish(nil, p)) {
			t.Fatal("NewPublishPacket differs from AppendPublish")
		}
		_, body, _ := split(t, pp.Bytes) // 1 + Remaining Length bytes + 2 + topic
		if want := len(pp.Bytes) - len(body) + 2 + len(topic); pp.IDOffset != want {
			t.Errorf("IDOffset %d, want %d", pp.IDOffset, want)
		}
		for _, id := range []uint16{7, 0x1234, 65535} {
			pp.SetPacketID(id)
			first, body, _ := split(t, pp.Bytes)
			got, err := Decode(first, body)
			if err != nil || got.Publish.PacketID != id || string(got.Publish.Payload) != "payload" || string(got.Publish.Topic) != topic {
				t.Fatalf("after SetPacketID(%d): %s, %v", id, show(got), err)
			}
		}
	}
	// The documented offset, exactly, for a one-byte Remaining Length.
	if pp := NewPublishPacket(nil, Publish{QoS: 1, Topic: []byte("a/b"), PacketID: 1}); pp.IDOffset != 1+1+2+3 {
		t.Errorf("IDOffset %d, want 7", pp.IDOffset)
	}
	qos0 := NewPublishPacket(nil, Publish{Topic: []byte("a")})
	if qos0.IDOffset != 0 {
		t.Errorf("QoS 0 IDOffset %d", qos0.IDOffset)
	}
	mustPanic(t, "SetPacketID on QoS 0", func() { qos0.SetPacketID(1) })
	// buf's capacity was reused: the encoding starts at buf[0].
	if pp := NewPublishPacket(buf[:10], Publish{Topic: []byte("a")}); &pp.Bytes[0] != &buf[:1][0] {
		t.Error("NewPublishPacket did not reuse buf")
	}
}

func TestEncodersAllocateNothing(t *testing.T) {
	buf := make([]byte, 0, 1024)
	p := Publish{QoS: 1, Topic: []byte("a/b"), PacketID: 3, Payload: make([]byte, 300)}
	codes := []byte{0, 1, SubackFailure}
	n := testing.AllocsPerRun(100, func() {
		AppendConnackBody(buf, true, Accepted)
		AppendPublishBody(buf, p)
		AppendPubackBody(buf, 1)
		AppendSubackBody(buf, 1, codes)
		AppendUnsubackBody(buf, 1)
		AppendPingrespBody(buf)
		AppendPacket(buf, 0x40, codes)
		AppendPublish(buf, p)
		NewPublishPacket(buf, p).SetPacketID(9)
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestEncodePanics(t *testing.T) {
	mustPanic(t, "topic over 65535 bytes", func() { AppendPublish(nil, Publish{Topic: make([]byte, 65536)}) })
	mustPanic(t, "topic over 65535 bytes", func() { AppendPublishBody(nil, Publish{Topic: make([]byte, 65536)}) })
}
