package mqtt

// Bytes nobody here wrote: these tests run the mosquitto command-line
// clients (mosquitto-clients 2.0.11) against a fake broker on 127.0.0.1 that
// answers with this package's encoders. The clients' packets must decode to
// what their options say, and the clients must accept what we send.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var writeSeeds = flag.Bool("mosquitto.seeds", false, "write the packets the mosquitto clients send to testdata/fuzz/FuzzDecode")

type rawPacket struct {
	first byte
	body  []byte
}

// clientRun is what one run of a client did.
type clientRun struct {
	raw            []rawPacket
	packets        []string // show() of each decoded packet, or its error
	stdout, stderr string
	exit           error
}

// readPacket reads a complete packet: first byte, Remaining Length (2.2.3), body.
func readPacket(r *bufio.Reader) (rawPacket, error) {
	first, err := r.ReadByte()
	if err != nil {
		return rawPacket{}, err
	}
	n := 0
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil || i == 4 {
			return rawPacket{}, fmt.Errorf("bad Remaining Length: %v", err)
		}
		n |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return rawPacket{first, body}, err
}

// reply is the fake broker's answer to p, made with the package's encoders
// where it has them (it only encodes what a broker sends).
func reply(p Packet, err error) []byte {
	switch {
	case err == ErrVersion:
		return whole(AppendConnackBody(nil, false, RefusedVersion))
	case err == ErrClientID:
		return whole(AppendConnackBody(nil, false, RefusedIdentifier))
	case err != nil:
		return nil
	}
	switch p.Type {
	case TypeConnect:
		return whole(AppendConnackBody(nil, false, Accepted))
	case TypePublish:
		switch p.Publish.QoS {
		case 1:
			return whole(AppendPubackBody(nil, p.Publish.PacketID))
		case 2: // the package has no PUBREC: a QoS 2 flow only to see PUBREL
			return AppendPacket(nil, header(TypePubrec), B.u16(p.Publish.PacketID))
		}
	case TypePubrel:
		return AppendPacket(nil, header(TypePubcomp), B.u16(p.PacketID))
	case TypeSubscribe:
		var codes []byte
		for _, qos := range p.Filters.All() {
			codes = append(codes, min(qos, 1)) // QoS 2 granted as 1 (3.9.3)
		}
		return whole(AppendSubackBody(nil, p.PacketID, codes))
	case TypeUnsubscribe:
		return whole(AppendUnsubackBody(nil, p.PacketID))
	case TypePingreq:
		return whole(AppendPingrespBody(nil))
	}
	return nil
}

// whole frames a body into a complete packet.
func whole(first byte, body []byte) []byte { return AppendPacket(nil, first, body) }

// runClient runs a mosquitto client with args against a fake broker that
// answers each packet with reply, then calls then(p) whose bytes, if any, it
// writes too. It stops reading at DISCONNECT, a decoding error, or EOF.
func runClient(t *testing.T, name string, args []string, then func(p Packet) []byte) clientRun {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v): CI must install the mosquitto-clients package", name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	cmd := exec.CommandContext(ctx, bin, append([]string{"-h", "127.0.0.1", "-p", port}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.WaitDelay = &stdout, &stderr, 5*time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() { // on t.Fatal: leave no process behind
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	var run clientRun
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("%s did not connect: %v", name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(conn)
	for {
		raw, err := readPacket(br)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("reading from %s: %v", name, err)
		}
		run.raw = append(run.raw, raw)
		p, err := Decode(raw.first, raw.body)
		if err != nil {
			run.packets = append(run.packets, err.Error())
		} else {
			run.packets = append(run.packets, show(p))
		}
		out := reply(p, err)
		if then != nil && err == nil {
			out = append(out, then(p)...)
		}
		if _, err := conn.Write(out); err != nil {
			t.Fatalf("writing to %s: %v", name, err)
		}
		if err != nil || p.Type == TypeDisconnect {
			break
		}
	}
	conn.Close()
	run.exit, waited = cmd.Wait(), true
	run.stdout, run.stderr = stdout.String(), stderr.String()
	if *writeSeeds {
		saveSeeds(t, run.raw)
	}
	return run
}

// saveSeeds writes the packets as FuzzDecode seeds, in the corpus format of
// go test fuzz v1.
func saveSeeds(t *testing.T, raw []rawPacket) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", " ", "_", ",", "").Replace(t.Name())
	for i, p := range raw {
		data := fmt.Sprintf("go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", p.first, p.body)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d", name, i)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func checkRun(t *testing.T, run clientRun, wantExit bool, want ...string) {
	t.Helper()
	if (run.exit == nil) != wantExit {
		t.Errorf("exit: %v (stderr %q)", run.exit, run.stderr)
	}
	if got := strings.Join(run.packets, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("packets:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestMosquittoPub(t *testing.T) {
	t.Run("qos1", func(t *testing.T) {
		t.Parallel()
		run := runClient(t, "mosquitto_pub", []string{"-t", "a/b", "-m", "hello", "-q", "1", "-i", "id1", "-k", "30"}, nil)
		checkRun(t, run, true,
			`type=1 clean=true keepalive=30 client="id1"`,
			`type=3 dup=false qos=1 retain=false topic="a/b" id=1 payload="hello"`,
			`type=14`)
	})
	t.Run("will credentials retain qos0", func(t *testing.T) {
		t.Parallel()
		run := runClient(t, "mosquitto_pub", []string{"-t", "$x/é", "-n", "-r", "-q", "0", "-i", "id2",
			"-u", "user", "-P", "se\x01cret", "--will-topic", "will/t", "--will-payload", "bye", "--will-qos", "1", "--will-retain"}, nil)
		checkRun(t, run, true,
			`type=1 clean=true keepalive=60 client="id2" will=qos1,retain=true,"will/t","bye" user="user" pass="se\x01cret"`,
			`type=3 dup=false qos=0 retain=true topic="$x/é" id=0 payload=""`,
			`type=14`)
	})
	t.Run("qos2 then pubrel", func(t *testing.T) {
		t.Parallel()
		run := runClient(t, "mosquitto_pub", []string{"-t", "q/2", "-m", "two", "-q", "2", "-i", "id3", "-c"}, nil)
		checkRun(t, run, true,
			`type=1 clean=false keepalive=60 client="id3"`,
			`type=3 dup=false qos=2 retain=false topic="q/2" id=1 payload="two"`,
			`type=6 id=1`,
			`type=14`)
	})
	t.Run("mqtt 3.1 refused", func(t *testing.T) {
		t.Parallel()
		run := runClient(t, "mosquitto_pub", []string{"-V", "mqttv31", "-t", "a", "-m", "x", "-i", "id4"}, nil)
		checkRun(t, run, false, ErrVersion.Error())
		if !strings.Contains(run.stderr, "unacceptable protocol version") {
			t.Errorf("stderr %q", run.stderr)
		}
	})
	t.Run("mqtt 5 refused", func(t *testing.T) {
		t.Parallel()
		run := runClient(t, "mosquitto_pub", []string{"-V", "5", "-t", "a", "-m", "x", "-i", "id5"}, nil)
		checkRun(t, run, false, ErrVersion.Error())
		if !strings.Contains(run.stderr, "Unsupported Protocol Version") {
			t.Errorf("stderr %q", run.stderr)
		}
	})
}

func TestMosquittoSub(t *testing.T) {
	t.Run("subscribe and receive", func(t *testing.T) {
		t.Parallel()
		long := strings.Repeat("L", 20000) // a 3-byte Remaining Length
		run := runClient(t, "mosquitto_sub", []string{"-t", "a/+/c", "-t", "#", "-q", "1", "-C", "4", "-v", "-i", "sub1", "-k", "30"},
			func(p Packet) []byte {
				if p.Type != TypeSubscribe {
					return nil
				}
				out := whole(AppendPublishBody(nil, Publish{Retain: true, Topic: []byte("x/y"), Payload: []byte("first")}))
				out = AppendPublish(out, Publish{Topic: []byte("l"), Payload: []byte(long)})
				pp := NewPublishPacket(nil, Publish{QoS: 1, Topic: []byte("a/b/c"), Payload: []byte("second")})
				pp.SetPacketID(7)
				out = append(out, pp.Bytes...)
				pp.SetPacketID(300)
				return append(out, pp.Bytes...)
			})
		checkRun(t, run, true,
			`type=1 clean=true keepalive=30 client="sub1"`,
			`type=8 id=1 "a/+/c":1 "#":1`,
			`type=4 id=7`,
			`type=4 id=300`,
			`type=14`)
		if want := "x/y first\nl " + long + "\na/b/c second\na/b/c second\n"; run.stdout != want {
			t.Errorf("stdout %.200q, want %.200q", run.stdout, want)
		}
	})
	t.Run("qos2 granted 1, unsubscribe", func(t *testing.T) {
		t.Parallel()
		run := runClient(t, "mosquitto_sub", []string{"-t", "a", "-U", "x/#", "-U", "y/+", "-q", "2", "-C", "1", "-i", "sub2"},
			func(p Packet) []byte {
				if p.Type != TypeUnsubscribe || p.PacketID != 3 {
					return nil
				}
				return AppendPublish(nil, Publish{QoS: 1, PacketID: 1, Topic: []byte("a"), Payload: []byte("after unsubscribe")})
			})
		checkRun(t, run, true,
			`type=1 clean=true keepalive=60 client="sub2"`,
			`type=8 id=1 "a":2`,
			`type=10 id=2 "x/#":0`,
			`type=10 id=3 "y/+":0`,
			`type=4 id=1`,
			`type=14`)
		if run.stdout != "after unsubscribe\n" {
			t.Errorf("stdout %q", run.stdout)
		}
	})
	t.Run("keep alive ping", func(t *testing.T) {
		t.Parallel()
		run := runClient(t, "mosquitto_sub", []string{"-t", "p", "-k", "5", "-C", "1", "-i", "sub3"},
			func(p Packet) []byte {
				if p.Type != TypePingreq {
					return nil
				}
				return AppendPublish(nil, Publish{Topic: []byte("p"), Payload: []byte("pong")})
			})
		checkRun(t, run, true,
			`type=1 clean=true keepalive=5 client="sub3"`,
			`type=8 id=1 "p":0`,
			`type=12`,
			`type=14`)
		if run.stdout != "pong\n" {
			t.Errorf("stdout %q", run.stdout)
		}
	})
}
