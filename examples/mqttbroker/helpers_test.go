package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/examples/mqttbroker/mqtt"
	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	ioTimeout   = 10 * time.Second // bounds each read, write and wait
	toolTimeout = 30 * time.Second // bounds each run of a mosquitto client
	pollEvery   = 5 * time.Millisecond
)

// broker is a Broker served in-process on a free port.
type broker struct {
	*Broker
	srv  *frameloop.Server
	addr string
	host string
	port string
}

func startBroker(t *testing.T, backend string, loops int, tune ...func(*frameloop.Config)) *broker {
	t.Helper()
	cfg := frameloop.DefaultConfig()
	cfg.Addr, cfg.Backend, cfg.Loops = "127.0.0.1:0", backend, loops
	cfg.Framing, _ = frameloop.ParseFraming("mqtt")
	cfg.IdleTimeout = 10 * time.Second
	for _, f := range tune {
		f(&cfg)
	}
	b := &broker{Broker: NewBroker()}
	srv, err := frameloop.New(b.Broker, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, frameloop.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	b.srv, b.addr = srv, srv.Addr().String()
	b.host, b.port, _ = net.SplitHostPort(b.addr)
	return b
}

// waitSubscribes waits until the broker has answered n SUBSCRIBE packets.
func (b *broker) waitSubscribes(t *testing.T, n int64) {
	t.Helper()
	testkit.Eventually(t, ioTimeout, pollEvery, func() bool { return b.Stats().Subscribes >= n }, "%d SUBSCRIBEs answered", n)
}

// eachSetup runs f over every backend, with one and two loops.
func eachSetup(t *testing.T, f func(t *testing.T, backend string, loops int)) {
	for _, backend := range poller.Backends() {
		for _, loops := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/loops=%d", backend, loops), func(t *testing.T) { f(t, backend, loops) })
		}
	}
}

// tool is a run of mosquitto_pub or mosquitto_sub against addr.
type tool struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

func startTool(t *testing.T, addr, name string, stdin io.Reader, args ...string) *tool {
	t.Helper()
	bin := testkit.RequireTool(t, name, "mosquitto-clients")
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	r := &tool{cmd: exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...), done: make(chan struct{})}
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr, r.cmd.WaitDelay = stdin, &r.stdout, &r.stderr, 5*time.Second
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); cancel(); close(r.done) }()
	t.Cleanup(func() { r.cmd.Process.Kill(); <-r.done })
	return r
}

// wait waits for the tool to exit and fails t unless it exited 0.
func (r *tool) wait(t *testing.T) string {
	t.Helper()
	<-r.done
	if r.err != nil {
		t.Fatalf("%s: %v (stderr %q, stdout %.300q)", filepath.Base(r.cmd.Path), r.err, r.stderr.String(), r.stdout.String())
	}
	return r.stdout.String()
}

func runTool(t *testing.T, addr, name string, args ...string) string {
	t.Helper()
	return startTool(t, addr, name, nil, args...).wait(t)
}

// client is a raw MQTT client over a socket, for what the mosquitto clients
// cannot be made to do.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *client {
	t.Helper()
	c := testkit.Dial(t, "tcp", addr, ioTimeout)
	return &client{t, c, bufio.NewReaderSize(c, 64<<10)}
}

// dialSmall is dialRaw with a receive buffer of 16 KiB, set before the
// connection is made: a subscriber whose kernel holds little for it. (Set
// after, the window already advertised no longer fits the buffer and the
// connection can stall in retransmissions when it starts reading again.)
func dialSmall(t *testing.T, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		return err
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t, c, bufio.NewReaderSize(c, 64<<10)}
}

func (c *client) send(pkts ...[]byte) {
	c.t.Helper()
	if err := testkit.WriteAll(c.c, bytes.Join(pkts, nil), ioTimeout); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one packet: its first byte and body.
func (c *client) read(timeout time.Duration) (byte, []byte, error) {
	c.c.SetReadDeadline(time.Now().Add(timeout))
	first, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n := 0
	for i := 0; ; i++ {
		b, err := c.r.ReadByte()
		if err != nil || i == 4 {
			return 0, nil, fmt.Errorf("bad Remaining Length: %v", err)
		}
		n |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(c.r, body)
	return first, body, err
}

// expect reads a packet and fails t unless it is want (a whole packet).
func (c *client) expect(want []byte) {
	c.t.Helper()
	first, body, err := c.read(ioTimeout)
	if err != nil {
		c.t.Fatalf("expected % x: %v", want, err)
	}
	if got := mqtt.AppendPacket(nil, first, body); !bytes.Equal(got, want) {
		c.t.Fatalf("got % x, want % x", got, want)
	}
}

// expectPublish reads a PUBLISH and returns it decoded (its first byte in
// Dup, QoS, Retain).
func (c *client) expectPublish() mqtt.Publish {
	c.t.Helper()
	first, body, err := c.read(ioTimeout)
	if err != nil {
		c.t.Fatalf("expected a PUBLISH: %v", err)
	}
	p, err := mqtt.Decode(first, body)
	if err != nil || p.Type != mqtt.TypePublish {
		c.t.Fatalf("expected a PUBLISH, got % x % x (%v)", first, body, err)
	}
	return p.Publish
}

// expectClosed checks the broker closes the connection, with nothing more
// sent, within timeout.
func (c *client) expectClosed(timeout time.Duration) {
	c.t.Helper()
	if err := testkit.ExpectClosedErr(c.c, timeout); err != nil {
		c.t.Fatal(err)
	}
	if c.r.Buffered() > 0 {
		c.t.Fatalf("%d more bytes before the close", c.r.Buffered())
	}
}

// connect sends CONNECT with clean session and reads CONNACK accepted.
func (c *client) connect(id string, keepAlive uint16) {
	c.t.Helper()
	c.send(connectPkt(id, keepAlive, 0x02))
	c.expect(connack(0, 0))
}

func (c *client) subscribe(id uint16, filter string, qos byte) {
	c.t.Helper()
	c.send(subscribePkt(id, filter, qos))
	c.expect(mqtt.AppendPacket(nil, 0x90, append(binary.BigEndian.AppendUint16(nil, id), min(qos, 1))))
}

func str(s string) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...) }

// connectPkt encodes a CONNECT of level 4 with flags and, after the client
// id, the fields extra (will topic and message, user name, password).
func connectPkt(id string, keepAlive uint16, flags byte, extra ...string) []byte {
	body := append(str("MQTT"), 4, flags)
	body = append(binary.BigEndian.AppendUint16(body, keepAlive), str(id)...)
	for _, e := range extra {
		body = append(body, str(e)...)
	}
	return mqtt.AppendPacket(nil, 0x10, body)
}

func connack(present, code byte) []byte { return []byte{0x20, 2, present, code} }

func subscribePkt(id uint16, filter string, qos byte) []byte {
	return mqtt.AppendPacket(nil, 0x82, append(append(binary.BigEndian.AppendUint16(nil, id), str(filter)...), qos))
}

func publishPkt(topic string, qos byte, id uint16, payload []byte) []byte {
	return mqtt.AppendPublish(nil, mqtt.Publish{QoS: qos, Topic: []byte(topic), PacketID: id, Payload: payload})
}

func puback(id uint16) []byte {
	return mqtt.AppendPacket(nil, 0x40, binary.BigEndian.AppendUint16(nil, id))
}

// checkLines checks that out holds exactly want lines, each publisher's
// "P-SEQ" lines in order, every sequence number once.
func checkLines(t *testing.T, out string, publishers map[string]int) {
	t.Helper()
	next := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		pub, seq, _ := strings.Cut(line, "-")
		n, err := strconv.Atoi(seq)
		if err != nil || n != next[pub] {
			t.Fatalf("line %q: want %s-%d", line, pub, next[pub])
		}
		next[pub]++
	}
	for pub, n := range publishers {
		if next[pub] != n {
			t.Fatalf("%d messages from %s, want %d", next[pub], pub, n)
		}
	}
}

func lines(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s-%d\n", prefix, i)
	}
	return b.String()
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// brokerBinary builds the example once.
func brokerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "mqttbroker-test"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "mqttbroker")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// process is the broker running as a program.
type process struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed once the process is reaped
	err    error         // its exit, once exited is closed
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(brokerBinary(t), append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), "msg=listening addr="); ok {
			p.addr, _, _ = strings.Cut(rest, " ")
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	if p.addr == "" {
		t.Fatal("the broker did not say where it listens")
	}
	return p
}
