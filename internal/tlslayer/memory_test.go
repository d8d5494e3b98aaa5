package tlslayer

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

const idleConns = 1000

type memFigure struct {
	heap, stack int64 // bytes per connection
}

// usage returns the live Go heap and the goroutine stacks in use, after
// two collections (the second clears sync.Pool victims).
func usage() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.StackInuse)
}

// sessionIdleMemory is what idleConns established, idle Sessions hold:
// each did a handshake and echoed one message of msgSize bytes, then
// (if release) Release. Measured as the drop when they are freed, so that
// whatever else is alive does not count.
func sessionIdleMemory(t testing.TB, scfg, ccfg *tls.Config, msgSize int, release bool) memFigure {
	sessions := make([]*Session, 0, idleConns)
	msg := make([]byte, msgSize)
	for range idleConns {
		pr := mustPair(t, scfg, ccfg)
		pr.echo(t, msg)
		if release {
			pr.s.Release()
		}
		sessions = append(sessions, pr.s)
	}
	h1, s1 := usage()
	runtime.KeepAlive(sessions)
	sessions = nil
	h0, s0 := usage()
	return memFigure{(h1 - h0) / idleConns, (s1 - s0) / idleConns}
}

// netIdleMemory is the same for the usual Go server: net.Listener, one
// goroutine per connection blocked in tls.Conn.Read with a 4 KiB buffer.
// The clients live in the same process; they stay alive while the server
// side is closed, so the drop is the server side's.
func netIdleMemory(t testing.TB, scfg, ccfg *tls.Config, msgSize int) memFigure {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	srvConns := make(chan net.Conn, idleConns)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srvConns <- c
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := tls.Server(c, scfg)
				buf := make([]byte, 4096)
				for {
					n, err := tc.Read(buf)
					if err != nil {
						return
					}
					if _, err := tc.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	clients := make([]*tls.Conn, 0, idleConns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		ln.Close()
		wg.Wait()
	}()
	msg := make([]byte, msgSize)
	back := make([]byte, msgSize)
	for range idleConns {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), ccfg)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the servers park in Read
	h1, s1 := usage()
	for range idleConns {
		(<-srvConns).Close()
	}
	ln.Close()
	wg.Wait()
	h0, s0 := usage()
	return memFigure{(h1 - h0) / idleConns, (s1 - s0) / idleConns}
}

// BenchmarkIdleMemory measures what an idle established connection costs,
// in one run: a Session (all the TLS state the loop would keep), with and
// without Release, after a 16 KiB echo, with a client certificate, and a
// net + crypto/tls server's connection (heap and goroutine stack). Each
// iteration builds idleConns connections per figure; run it once:
//
//	go test -run '^$' -bench IdleMemory -benchtime 1x ./internal/tlslayer
//
// It is a benchmark so that the ordinary test run does not pay for 10,000
// handshakes; it asserts nothing.
func BenchmarkIdleMemory(b *testing.B) {
	if raceEnabled {
		b.Skip("memory figures are measured without the race detector")
	}
	p := getPKI(b)
	for _, v := range versions {
		b.Run(v.name, func(b *testing.B) {
			scfg, ccfg := p.ServerConfig(false), p.ClientConfig(v.v)
			mcfg, mccfg := p.ServerConfig(true), p.ClientConfig(v.v)
			mccfg.Certificates = []tls.Certificate{p.Client}
			var sess, noRel, big, mtls, nt memFigure
			for range b.N {
				sess = sessionIdleMemory(b, scfg, ccfg, 64, true)
				noRel = sessionIdleMemory(b, scfg, ccfg, 64, false)
				big = sessionIdleMemory(b, scfg, ccfg, 16384, true)
				mtls = sessionIdleMemory(b, mcfg, mccfg, 64, true)
				nt = netIdleMemory(b, scfg, ccfg, 64)
			}
			b.ReportMetric(float64(sess.heap), "B/session")
			b.ReportMetric(float64(nt.heap+nt.stack), "B/net-conn")
			b.Logf("%s, per idle connection, after a 64-byte echo (%d connections each):", v.name, idleConns)
			b.Logf("  Session, after Release:             %6d B heap", sess.heap)
			b.Logf("  Session, without Release:           %6d B heap", noRel.heap)
			b.Logf("  Session, after a 16 KiB echo:       %6d B heap (crypto/tls keeps its record buffer)", big.heap)
			b.Logf("  Session, client certificate:        %6d B heap (the parsed peer chain is kept)", mtls.heap)
			b.Logf("  net + crypto/tls, goroutine/conn:   %6d B heap + %6d B stack = %d B", nt.heap, nt.stack, nt.heap+nt.stack)
		})
	}
}
