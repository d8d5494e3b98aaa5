package main

// --framing against encoders nobody here wrote (docs/behaviour.md §1.1):
// varint-delimited protobuf from google.golang.org/protobuf's protodelim,
// Kafka requests built by Python's struct per the protocol guide, and the
// MQTT packets mosquitto's own clients send. The echo daemon must return
// every frame as the identical bytes.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/frameloop/frameloop/internal/testkit"
)

// echoStream writes stream to a --framing daemon and reads back as many
// bytes, which must be the same.
func echoStream(t *testing.T, d *daemon, stream []byte) {
	t.Helper()
	c := d.dial(t)
	c.SetDeadline(time.Now().Add(ioWait))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(stream); errc <- err }()
	got := make([]byte, len(stream))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %d bytes of echoes: %v", len(stream), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("the echoes differ from what was sent (%s vs %s)", testkit.Preview(got), testkit.Preview(stream))
	}
}

func TestDaemonFramingVarintEchoesProtodelimMessages(t *testing.T) {
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--framing", "varint")
	// Messages around the varint's byte-count boundaries: 1, 2 and 3
	// bytes of length.
	var msgs []proto.Message
	var stream bytes.Buffer
	for i, n := range []int{0, 100, 126, 127, 128, 300, 16383, 16384, 70000} {
		m, err := structpb.NewValue(map[string]any{"seq": float64(i), "data": strings.Repeat("x", n)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := protodelim.MarshalTo(&stream, m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	c := d.dial(t)
	c.SetDeadline(time.Now().Add(ioWait))
	go c.Write(stream.Bytes())
	r := bufio.NewReader(c)
	for i, want := range msgs {
		got := &structpb.Value{}
		if err := (protodelim.UnmarshalOptions{MaxSize: 1 << 20}).UnmarshalFrom(r, got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("message %d differs after the round trip", i)
		}
	}
}

// kafkaClient builds Kafka requests the way the protocol guide lays them
// out — an int32 big-endian size, then api_key, api_version,
// correlation_id (int16, int16, int32) and a nullable client_id string
// (int16 length) — and writes them to stdout.
const kafkaClient = `
import struct, sys
out = bytearray()
def request(api_key, version, corr, client, body):
    msg = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
    return struct.pack(">i", len(msg)) + msg
out += request(18, 0, 1, b"frameloop-test", b"")                      # ApiVersions v0
out += request(3, 1, 2, b"frameloop-test", struct.pack(">i", 2) +    # Metadata v1, two topics
               struct.pack(">h", 6) + b"orders" + struct.pack(">h", 8) + b"payments")
out += request(3, 1, 3, b"", struct.pack(">i", -1))                    # all topics
sys.stdout.buffer.write(out)
`

func TestDaemonFramingU32BEEchoesKafkaRequests(t *testing.T) {
	py := testkit.RequireTool(t, "python3", "python3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", kafkaClient).Output()
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--framing", "u32be")
	echoStream(t, d, out)
}

// captureMQTT runs a mosquitto client against a stand-in broker that says
// yes to everything, and returns the bytes the client sent. The stand-in
// frames what it reads just enough to answer: CONNACK, PUBACK, SUBACK,
// PINGRESP.
func captureMQTT(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	bin := testkit.RequireTool(t, name, "mosquitto-clients")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-h", "127.0.0.1", "-p", port}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill() // mosquitto_sub would wait for messages forever
		cmd.Wait()
	}()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(ioWait))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("%s did not connect: %v %s", name, err, stderr.String())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var sent bytes.Buffer
	r := bufio.NewReader(io.TeeReader(c, &sent))
	for {
		first, err := r.ReadByte()
		if err != nil {
			break // the client disconnected
		}
		var size, shift int
		for {
			b, err := r.ReadByte()
			if err != nil {
				t.Fatal(err)
			}
			size |= int(b&0x7f) << shift
			shift += 7
			if b&0x80 == 0 {
				break
			}
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		switch first >> 4 {
		case 1: // CONNECT
			c.Write([]byte{0x20, 2, 0, 0})
		case 3: // PUBLISH
			if first&0x06 != 0 { // QoS 1: answer with its packet id
				topicLen := int(body[0])<<8 | int(body[1])
				c.Write([]byte{0x40, 2, body[2+topicLen], body[3+topicLen]})
			}
		case 8: // SUBSCRIBE: grant QoS 0
			c.Write([]byte{0x90, 3, body[0], body[1], 0})
		case 12: // PINGREQ
			c.Write([]byte{0xd0, 0})
			return sent.Bytes() // seen what was wanted
		case 14: // DISCONNECT
			return sent.Bytes()
		}
	}
	return sent.Bytes()
}

func TestDaemonFramingMQTTEchoesMosquittoPackets(t *testing.T) {
	t.Parallel()
	// CONNECT, PUBLISH at QoS 0 and 1 with a large payload (a 3-byte
	// remaining length), DISCONNECT; and from mosquitto_sub, CONNECT,
	// SUBSCRIBE and the PINGREQ of its 5 s keep-alive.
	big := strings.Repeat("m", 20000)
	pub := captureMQTT(t, "mosquitto_pub", "-t", "a/b", "-m", big, "-q", "1", "-i", "frameloop-pub")
	pub = append(pub, captureMQTT(t, "mosquitto_pub", "-t", "a/b", "-m", "hello", "-q", "0")...)
	sub := captureMQTT(t, "mosquitto_sub", "-t", "a/+", "-k", "5", "-i", "frameloop-sub")
	if len(pub) < 20000 || len(sub) == 0 || sub[len(sub)-2] != 0xc0 {
		t.Fatalf("capture failed: %d bytes from mosquitto_pub, %d from mosquitto_sub (last %x)", len(pub), len(sub), sub[max(0, len(sub)-2):])
	}
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--framing", "mqtt")
	echoStream(t, d, append(pub, sub...))
}

// The README's Python client for a non-default framing.
func TestDaemonFramingReadmePythonClient(t *testing.T) {
	py := testkit.RequireTool(t, "python3", "python3")
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const start = "```python\n# --framing u16be"
	i := bytes.Index(readme, []byte(start))
	if i < 0 {
		t.Fatalf("README.md has no Python client starting %q", start)
	}
	script := readme[i+len("```python\n"):]
	script = script[:bytes.Index(script, []byte("```"))]
	d := startDaemon(t, "--addr", "127.0.0.1:0", "--framing", "u16be")
	_, port, _ := net.SplitHostPort(d.addr)
	program := strings.Replace(string(script), "5882", port, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", program).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "b'hello'" {
		t.Fatalf("README client: %v\n%s", err, out)
	}
}
