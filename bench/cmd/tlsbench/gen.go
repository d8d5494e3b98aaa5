//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what one generator run reports, as JSON on its standard output.
type Result struct {
	Mode     string `json:"mode"` // "load" or "idle"
	Conns    int    `json:"conns"`
	Pipeline int    `json:"pipeline,omitempty"`
	Size     int    `json:"size"`
	// TLS parameters negotiated (by the first connection).
	Version string `json:"version"`
	Group   string `json:"group"`
	Cipher  string `json:"cipher"`

	// Load mode, over the measured window.
	Seconds     float64 `json:"seconds,omitempty"`
	Msgs        int64   `json:"msgs,omitempty"`
	ServerCPUns int64   `json:"server_cpu_ns,omitempty"`  // from /proc/PID/task/*/schedstat
	ServerStat  int64   `json:"server_stat_ns,omitempty"` // utime+stime, 10 ms ticks: a cross-check
	GenCPUns    int64   `json:"gen_cpu_ns,omitempty"`     // getrusage(RUSAGE_SELF)
	P50us       float64 `json:"p50_us,omitempty"`
	P99us       float64 `json:"p99_us,omitempty"`
	P999us      float64 `json:"p999_us,omitempty"`

	// Idle mode.
	Opened          int     `json:"opened,omitempty"`
	HandshakeSecs   float64 `json:"handshake_seconds,omitempty"` // opening all of them (dial, handshake, one echo)
	ServerHSCPUns   int64   `json:"server_handshake_cpu_ns,omitempty"`
	RSSBefore       int64   `json:"rss_before,omitempty"`
	RSSAfter        int64   `json:"rss_after,omitempty"`
	NofileSoftLimit uint64  `json:"nofile,omitempty"`

	// Verification: every reply is compared byte for byte.
	Mismatched int64  `json:"mismatched"`
	Lost       int64  `json:"lost"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

type genConfig struct {
	Addr               string
	CA                 string // PEM file of the CA to trust
	ServerPid          int
	Conns, Pipeline    int
	Size               int
	Warmup, Duration   time.Duration
	Idle               int
	Hold               time.Duration
	HandshakeParallel  int
	WarmupConns        int
	DrainTimeout       time.Duration
	ConnectTimeout     time.Duration
	RSSSettle, WarmEnd time.Duration
}

// minPayload holds the sequence number (8 bytes) and the connection id (4).
const minPayload = 12

// fillPayload writes payload seq of connection id: the sequence number, the
// id, then bytes derived from both, so that a reply from the wrong
// connection or out of order differs.
func fillPayload(p []byte, id uint32, seq uint64) {
	binary.LittleEndian.PutUint64(p, seq)
	binary.LittleEndian.PutUint32(p[8:], id)
	x := byte(seq*31) ^ byte(id*7)
	for i := minPayload; i < len(p); i++ {
		p[i] = x + byte(i)
	}
}

// appendFrame appends the frame (header and payload) seq of connection id.
func appendFrame(b []byte, size int, id uint32, seq uint64) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	n := len(b)
	b = append(b, make([]byte, size)...)
	fillPayload(b[n:], id, seq)
	return b
}

// clientConfig trusts only the CA in file ca and speaks TLS 1.3 only, with
// crypto/tls's defaults otherwise (key exchange groups included).
func clientConfig(ca string) (*tls.Config, error) {
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", ca)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}, nil
}

// errs counts failures and keeps the first one.
type errs struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (e *errs) add(format string, a ...any) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = fmt.Sprintf(format, a...)
		e.mu.Unlock()
	}
}

func (r *Result) setTLS(cs tls.ConnectionState) {
	r.Version = tls.VersionName(cs.Version)
	r.Group = cs.CurveID.String()
	r.Cipher = tls.CipherSuiteName(cs.CipherSuite)
}

// dialTLS opens a connection, completes the TLS handshake and echoes one
// frame (so that the server has surely finished its side), checking it.
func dialTLS(ctx context.Context, addr string, cfg *tls.Config, timeout time.Duration, size int, id uint32) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %v", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	want := appendFrame(nil, size, id, 0)
	if _, err := c.Write(want); err != nil {
		c.Close()
		return nil, fmt.Errorf("writing: %v", err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the echo: %v", err)
	}
	_ = c.SetDeadline(time.Time{})
	if !bytes.Equal(got, want) {
		c.Close()
		return nil, errMismatch
	}
	return c, nil
}

var errMismatch = errors.New("echo differs from the frame sent")

// runLoad is the closed loop: Conns connections, each a goroutine keeping
// Pipeline frames in flight; when replies arrive (each checked byte for
// byte, in order) as many new frames are sent in one write.
func runLoad(cfg genConfig) (Result, error) {
	r := Result{Mode: "load", Conns: cfg.Conns, Pipeline: cfg.Pipeline, Size: cfg.Size}
	tcfg, err := clientConfig(cfg.CA)
	if err != nil {
		return r, err
	}
	conns := make([]*tls.Conn, cfg.Conns)
	for i := range conns {
		c, err := dialTLS(context.Background(), cfg.Addr, tcfg, cfg.ConnectTimeout, cfg.Size, uint32(i))
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			if errors.Is(err, errMismatch) {
				r.Mismatched++
			}
			r.Errors++
			return r, fmt.Errorf("connection %d: %v", i, err)
		}
		conns[i] = c
	}
	r.setTLS(conns[0].ConnectionState())

	var (
		done      atomic.Int64 // replies received and verified
		recording atomic.Bool
		stopSend  atomic.Bool
		e         errs
		mismatch  atomic.Int64
		lost      atomic.Int64
		wg        sync.WaitGroup
	)
	hists := make([]*hdrhistogram.Histogram, cfg.Conns)
	for i, c := range conns {
		h := hdrhistogram.New(1, 10_000_000, 3) // µs
		hists[i] = h
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			id := uint32(i)
			p, size := cfg.Pipeline, cfg.Size
			fsize := 4 + size
			sent := make([]int64, p) // send times, a ring indexed by seq % p
			var seqSent, seqRecv uint64 = 1, 1
			out := make([]byte, 0, p*fsize)
			send := func(k int) bool {
				out = out[:0]
				t := nanotime()
				for range k {
					out = appendFrame(out, size, id, seqSent)
					sent[seqSent%uint64(p)] = t
					seqSent++
				}
				if _, err := c.Write(out); err != nil {
					e.add("connection %d: write: %v", i, err)
					return false
				}
				return true
			}
			if !send(p) {
				return
			}
			in := make([]byte, 64<<10)
			want := make([]byte, fsize)
			have := 0
			draining := false
			for {
				if !draining && stopSend.Load() {
					draining = true
					_ = c.SetReadDeadline(time.Now().Add(cfg.DrainTimeout))
				}
				if draining && seqRecv == seqSent {
					return
				}
				n, err := c.Read(in[have:])
				if err != nil {
					if draining {
						lost.Add(int64(seqSent - seqRecv))
					} else {
						e.add("connection %d: read: %v", i, err)
					}
					return
				}
				have += n
				now := nanotime()
				rec := recording.Load()
				k := 0
				off := 0
				for have-off >= fsize {
					if seqRecv == seqSent {
						mismatch.Add(1)
						e.add("connection %d: a reply to a frame never sent", i)
						return
					}
					want = appendFrame(want[:0], size, id, seqRecv)
					if !bytes.Equal(in[off:off+fsize], want) {
						mismatch.Add(1)
						e.add("connection %d: reply %d differs from the frame sent", i, seqRecv)
						return
					}
					if rec {
						_ = h.RecordValue(max(1, (now-sent[seqRecv%uint64(p)])/1000))
					}
					seqRecv++
					off += fsize
					k++
				}
				if off > 0 {
					have = copy(in, in[off:have])
				}
				done.Add(int64(k))
				if k > 0 && !stopSend.Load() {
					if !send(k) {
						return
					}
				}
			}
		}()
	}

	time.Sleep(cfg.Warmup)
	m0, g0, s0, st0 := done.Load(), selfCPU(), procSchedNs(cfg.ServerPid), procStatNs(cfg.ServerPid)
	t0 := nanotime()
	recording.Store(true)
	time.Sleep(cfg.Duration)
	m1, g1, s1, st1 := done.Load(), selfCPU(), procSchedNs(cfg.ServerPid), procStatNs(cfg.ServerPid)
	t1 := nanotime()
	recording.Store(false)
	stopSend.Store(true)
	wg.Wait()

	r.Seconds = float64(t1-t0) / 1e9
	r.Msgs = m1 - m0
	r.GenCPUns = g1 - g0
	r.ServerCPUns = s1 - s0
	r.ServerStat = st1 - st0
	all := hdrhistogram.New(1, 10_000_000, 3)
	for _, h := range hists {
		all.Merge(h)
	}
	r.P50us = float64(all.ValueAtQuantile(50))
	r.P99us = float64(all.ValueAtQuantile(99))
	r.P999us = float64(all.ValueAtQuantile(99.9))
	r.Mismatched = mismatch.Load()
	r.Lost = lost.Load()
	r.Errors = e.n.Load() - r.Mismatched
	r.FirstError = e.first
	if r.Mismatched+r.Lost+r.Errors > 0 {
		return r, fmt.Errorf("%d mismatched, %d lost, %d errors (first: %s)", r.Mismatched, r.Lost, r.Errors, e.first)
	}
	if s0 < 0 || s1 < 0 || g0 < 0 || g1 < 0 {
		return r, errors.New("CPU time unavailable")
	}
	return r, nil
}

// runIdle opens cfg.Idle TLS connections at most cfg.HandshakeParallel at a
// time (each: dial, handshake, one echo checked), holds them cfg.Hold and
// closes them. Like the suite's S4, WarmupConns connections are first
// opened, echoed and closed, and the baseline RSS is read WarmEnd later;
// the RSS with the connections open is read RSSSettle after the last one
// was opened.
func runIdle(cfg genConfig) (Result, error) {
	r := Result{Mode: "idle", Conns: cfg.Idle, Size: cfg.Size}
	tcfg, err := clientConfig(cfg.CA)
	if err != nil {
		return r, err
	}
	r.NofileSoftLimit = raiseNofile()
	var e errs
	var mismatch atomic.Int64
	open := func(n int) ([]*tls.Conn, time.Duration) {
		conns := make([]*tls.Conn, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range min(cfg.HandshakeParallel, n) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					c, err := dialTLS(context.Background(), cfg.Addr, tcfg, cfg.ConnectTimeout, cfg.Size, uint32(i))
					if err != nil {
						if errors.Is(err, errMismatch) {
							mismatch.Add(1)
						}
						e.add("idle connection %d: %v", i, err)
						continue
					}
					conns[i] = c
				}
			}()
		}
		wg.Wait()
		return conns, time.Since(start)
	}
	closeAll := func(conns []*tls.Conn) {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}

	warm, _ := open(min(cfg.WarmupConns, cfg.Idle))
	closeAll(warm)
	time.Sleep(cfg.WarmEnd)
	r.RSSBefore = procRSS(cfg.ServerPid)

	cpu0 := procSchedNs(cfg.ServerPid)
	conns, took := open(cfg.Idle)
	cpu1 := procSchedNs(cfg.ServerPid)
	opened := time.Now()
	r.HandshakeSecs = took.Seconds()
	r.ServerHSCPUns = cpu1 - cpu0
	for _, c := range conns {
		if c != nil {
			r.Opened++
			if r.Version == "" {
				r.setTLS(c.ConnectionState())
			}
		}
	}
	time.Sleep(cfg.RSSSettle)
	r.RSSAfter = procRSS(cfg.ServerPid)
	time.Sleep(time.Until(opened.Add(cfg.Hold)))
	// Every connection must still be open: a server that closed one
	// would make a read return at once.
	for i, c := range conns {
		if c == nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Microsecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			e.add("idle connection %d: not open after the hold: %v", i, err)
		}
	}
	closeAll(conns)
	r.Mismatched = mismatch.Load()
	r.Errors = e.n.Load() - r.Mismatched
	r.FirstError = e.first
	if e.n.Load() > 0 {
		return r, fmt.Errorf("%d of %d idle connections failed (first: %s)", e.n.Load(), cfg.Idle, e.first)
	}
	if r.RSSBefore <= 0 || r.RSSAfter <= 0 {
		return r, errors.New("server RSS unavailable")
	}
	return r, nil
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit and returns it.
func raiseNofile() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur
}
