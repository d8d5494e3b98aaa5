package frameloop_test

// docs/behaviour.md §4: no input, however malformed, crashes the server or affects
// other connections.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/frameloop/frameloop"
	"github.com/frameloop/frameloop/internal/testkit"
)

// garbageOutcome is what a garbage connection may come to.
type garbageOutcome uint8

const (
	closedByServer garbageOutcome = iota // its input is rejected
	echoedExactly                        // its input happens to be valid frames
	eitherOutcome                        // closed, or still open and harmless
)

func TestGarbageInputLeavesOthersServed(t *testing.T) {
	perKind := 8
	if testing.Short() {
		perKind = 3
	}
	httpReq := []byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n")
	tlsHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	kinds := []struct {
		name   string
		input  func(rng *rand.Rand) []byte
		expect garbageOutcome
	}{
		{name: "random bytes", input: func(rng *rand.Rand) []byte { return testkit.Pattern(64<<10, rng.Uint64()) }, expect: eitherOutcome},
		{name: "0xff bytes", input: func(*rand.Rand) []byte { return bytes.Repeat([]byte{0xff}, 64<<10) }, expect: closedByServer},
		{name: "zero bytes (empty frames)", input: func(*rand.Rand) []byte { return make([]byte, 64<<10) }, expect: echoedExactly},
		{name: "HTTP request", input: func(*rand.Rand) []byte { return bytes.Repeat(httpReq, 100) }, expect: closedByServer},
		{name: "TLS ClientHello", input: func(rng *rand.Rand) []byte { return append(tlsHello, testkit.Pattern(500, rng.Uint64())...) }, expect: closedByServer},
		{name: "PROXY header", input: func(*rand.Rand) []byte { return []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n") }, expect: closedByServer},
	}
	forEachServerConfig(t, func(t *testing.T, cfg frameloop.Config) {
		ts := startServer(t, nil, cfg)
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)

		// A bystander echoes all along, checking every reply.
		by := startBystander(t, ts.addr, 2000)

		type result struct {
			name string
			conn net.Conn
		}
		var conns []result
		for _, k := range kinds {
			for i := range perKind {
				conns = append(conns, result{name: fmt.Sprintf("%s #%d", k.name, i), conn: testkit.DialTCP(t, ts.addr, ioTimeout)})
			}
		}
		err := runGoroutines(len(conns), func(i int) error {
			k := kinds[i/perKind]
			c := conns[i].conn
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			input := k.input(rng)
			// Write in random cuts while reading whatever comes back.
			werr := make(chan error, 1)
			go func() {
				werr <- writeChunks(c, input, func(int) int { return 1 + rng.IntN(8<<10) }, 0)
			}()
			got, rerr := testkit.ReadUntilClosed(c, 2*time.Second)
			<-werr // a write error is expected once the server has closed
			switch k.expect {
			case closedByServer:
				if !testkit.IsClosed(rerr) {
					return fmt.Errorf("%s: want the server to close it, got %v", conns[i].name, rerr)
				}
			case echoedExactly:
				if !testkit.IsTimeout(rerr) || !bytes.Equal(got, input) {
					return fmt.Errorf("%s: want its %d bytes echoed and the connection kept, got %d bytes, %v",
						conns[i].name, len(input), len(got), rerr)
				}
			case eitherOutcome:
				if !testkit.IsClosed(rerr) && !testkit.IsTimeout(rerr) {
					return fmt.Errorf("%s: %v", conns[i].name, rerr)
				}
			}
			return nil
		})
		by.stop(t, "while the garbage was sent")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range conns {
			r.conn.Close()
		}
		// Every garbage connection goes; the bystander stays, served.
		ts.waitStats(t, ioTimeout, "back to the bystander alone", func(st frameloop.Stats) bool {
			return st.Connections == 1
		})
		testkit.Echo(t, by.c, []byte("after the garbage"), ioTimeout)
		testkit.Echo(t, testkit.DialTCP(t, ts.addr, ioTimeout), []byte("a new connection"), ioTimeout)
	})
}
