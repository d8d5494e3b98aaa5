//go:build linux

package main

// The generator: raw non-blocking sockets on one epoll, one goroutine, no
// goroutine per connection. It runs pinned to its own core (the
// orchestrator starts it under taskset) and prints its result as JSON.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

const topic = "bench"

// genConfig is what one generator run does.
type genConfig struct {
	Addr      string
	BrokerPid int
	Subs      int           // fan-out: subscribers of the topic
	Size      int           // payload bytes, at least 16 (sequence number, timestamp)
	Window    int           // messages published and not yet delivered to every subscriber
	Warmup    time.Duration // not measured
	Duration  time.Duration // measured
	Idle      int           // idle mode: connect and subscribe this many clients, hold, report RSS
	Hold      time.Duration
}

// Result is one generator run, as JSON.
type Result struct {
	Published, Delivered    int64   // in the measured interval
	Reads                   int64   // subscriber reads that brought data, in the measured interval
	Seconds                 float64 // the measured interval
	BrokerCPUns, GenCPUns   int64   // CPU time over the measured interval
	P50us, P99us, P999us    float64 // publish to delivery
	Lost, Mismatched, Dupes int64   // over the whole run, warm-up included
	RSSBefore, RSSAfter     int64   // idle mode: the broker's RSS, bytes
	Clients                 int     // idle mode: clients connected and subscribed
}

// sub is one subscriber's connection: its unfinished packet and the
// sequence number it expects next.
type sub struct {
	fd   int
	next uint64
	tail []byte
}

var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// dial connects a blocking socket (setup is not measured), sends pkt and
// returns the socket.
func dial(sa unix.Sockaddr, pkt []byte) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := writeAll(fd, pkt); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readExactly reads n bytes from a blocking socket within the deadline.
func readExactly(fd, n int) ([]byte, error) {
	b := make([]byte, n)
	for got := 0; got < n; {
		k, err := unix.Read(fd, b[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || k == 0 {
			return nil, fmt.Errorf("reading the acknowledgements: %v (got %d of %d bytes)", err, got, n)
		}
		got += k
	}
	return b, nil
}

func mqttString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// packet frames a body: first byte, Remaining Length, body.
func packet(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for ; n >= 0x80; n >>= 7 {
		out = append(out, byte(n)|0x80)
	}
	return append(append(out, byte(n)), body...)
}

// connectSubscribe is CONNECT (clean session, keep-alive 0) and, unless
// filter is empty, SUBSCRIBE at QoS 0 in one write; the broker answers
// CONNACK (4 bytes) and SUBACK (5 bytes).
func connectSubscribe(id, filter string) []byte {
	body := append(mqttString(nil, "MQTT"), 4, 0x02, 0, 0)
	pkt := packet(0x10, mqttString(body, id))
	if filter != "" {
		pkt = append(pkt, packet(0x82, append(mqttString([]byte{0, 1}, filter), 0))...)
	}
	return pkt
}

// connectAll connects n clients, pipelining the handshakes in batches.
func connectAll(sa unix.Sockaddr, n int, prefix string, filter func(i int) string) ([]int, error) {
	fds := make([]int, 0, n)
	const batch = 256
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		for i := start; i < end; i++ {
			fd, err := dial(sa, connectSubscribe(fmt.Sprintf("%s%d", prefix, i), filter(i)))
			if err != nil {
				closeAll(fds)
				return nil, fmt.Errorf("client %d: %v", i, err)
			}
			fds = append(fds, fd)
		}
		for _, fd := range fds[start:end] {
			ack, err := readExactly(fd, 9)
			if err != nil {
				closeAll(fds)
				return nil, err
			}
			if string(ack) != "\x20\x02\x00\x00\x90\x03\x00\x01\x00" {
				closeAll(fds)
				return nil, fmt.Errorf("CONNACK and SUBACK: got % x", ack)
			}
		}
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func sockaddr(addr string) (unix.Sockaddr, error) {
	host, port, ok := strings.Cut(addr, ":")
	p, err := strconv.Atoi(port)
	if !ok || err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("address %q: want 127.0.0.1:PORT", addr)
	}
	return &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}, nil
}

// runIdle connects cfg.Idle clients, each subscribed to its own topic,
// holds them and reports the broker's RSS before and after.
func runIdle(cfg genConfig) (Result, error) {
	sa, err := sockaddr(cfg.Addr)
	if err != nil {
		return Result{}, err
	}
	var r Result
	r.RSSBefore = rss(cfg.BrokerPid)
	fds, err := connectAll(sa, cfg.Idle, "idle-", func(i int) string { return fmt.Sprintf("devices/%d/cmd", i) })
	if err != nil {
		return r, err
	}
	defer closeAll(fds)
	time.Sleep(cfg.Hold)
	r.RSSAfter, r.Clients = rss(cfg.BrokerPid), len(fds)
	return r, nil
}

// runFanout is the measurement: one publisher, cfg.Subs subscribers of one
// topic, QoS 0, at most cfg.Window messages in flight (published and not
// yet received by every subscriber).
func runFanout(cfg genConfig) (Result, error) {
	sa, err := sockaddr(cfg.Addr)
	if err != nil {
		return Result{}, err
	}
	fds, err := connectAll(sa, cfg.Subs, "sub-", func(int) string { return topic })
	if err != nil {
		return Result{}, err
	}
	defer closeAll(fds)
	pub, err := dial(sa, connectSubscribe("pub", ""))
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(pub)
	if ack, err := readExactly(pub, 4); err != nil || string(ack) != "\x20\x02\x00\x00" {
		return Result{}, fmt.Errorf("publisher's CONNACK: % x %v", ack, err)
	}

	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(ep)
	subs := make([]*sub, len(fds))
	byFd := map[int]*sub{}
	for i, fd := range fds {
		unix.SetNonblock(fd, true)
		subs[i] = &sub{fd: fd}
		byFd[fd] = subs[i]
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return Result{}, err
		}
	}

	hist := hdrhistogram.New(1, 60_000_000, 3) // µs
	pending := make([]int, cfg.Window)         // deliveries so far of each message in flight, by seq % Window
	var sent, done uint64                      // messages published; messages delivered to every subscriber
	var r Result
	var delivered int64
	var measuring bool
	var cpu0, gen0, t0 int64
	var pubBuf []byte
	payload := make([]byte, cfg.Size)
	buf := make([]byte, 256<<10)
	events := make([]unix.EpollEvent, 256)
	start := nanotime()
	warmEnd, end := start+int64(cfg.Warmup), start+int64(cfg.Warmup+cfg.Duration)
	pktLen := len(publishPacket(nil, 0, 0, payload))
	stopping := false
	drainUntil := int64(0)

	for {
		now := nanotime()
		if !measuring && now >= warmEnd {
			measuring, t0, cpu0, gen0 = true, now, cpuTime(cfg.BrokerPid), cpuTime(os.Getpid())
			delivered, r.Published, r.Reads = 0, 0, 0
			hist.Reset()
		}
		if measuring && !stopping && now >= end {
			r.Seconds = float64(now-t0) / 1e9
			r.BrokerCPUns, r.GenCPUns = cpuTime(cfg.BrokerPid)-cpu0, cpuTime(os.Getpid())-gen0
			r.Delivered = delivered
			stopping, drainUntil = true, now+int64(5*time.Second)
		}
		if stopping && (done == sent || now > drainUntil) {
			break
		}
		// Publish while the window has room: each message's payload holds
		// its sequence number and the time it was sent.
		pubBuf = pubBuf[:0]
		for !stopping && sent-done < uint64(cfg.Window) {
			pending[sent%uint64(cfg.Window)] = 0
			pubBuf = publishPacket(pubBuf, sent, nanotime(), payload)
			sent++
			if measuring {
				r.Published++
			}
		}
		if len(pubBuf) > 0 {
			if err := writeAll(pub, pubBuf); err != nil {
				return r, fmt.Errorf("publishing: %v", err)
			}
		}
		n, err := unix.EpollWait(ep, events, 100)
		if err != nil && err != unix.EINTR {
			return r, err
		}
		for _, ev := range events[:max(n, 0)] {
			s := byFd[int(ev.Fd)]
			k, err := unix.Read(s.fd, buf)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil || k == 0 {
				return r, fmt.Errorf("subscriber %d: the broker closed the connection (%v)", s.fd, err)
			}
			at := nanotime()
			if measuring && !stopping {
				r.Reads++
			}
			data := buf[:k]
			if len(s.tail) > 0 {
				s.tail = append(s.tail, data...)
				data = s.tail
			}
			for len(data) >= pktLen {
				seq, ts, ok := checkPublish(data[:pktLen], s.next, cfg.Size)
				if !ok {
					if seq < s.next {
						r.Dupes++
					} else {
						r.Mismatched++
					}
					return r, fmt.Errorf("subscriber %d: got message %d (% x), want %d", s.fd, seq, data[:min(len(data), 32)], s.next)
				}
				s.next++
				if measuring && !stopping {
					delivered++
					hist.RecordValue(max(1, (at-ts)/1000))
				}
				if i := seq % uint64(cfg.Window); seq >= done {
					if pending[i]++; pending[i] == len(subs) && seq == done {
						for done < sent && pending[done%uint64(cfg.Window)] == len(subs) {
							done++
						}
					}
				}
				data = data[pktLen:]
			}
			s.tail = append(s.tail[:0], data...)
		}
	}
	for _, s := range subs {
		r.Lost += int64(sent - s.next)
	}
	r.P50us, r.P99us, r.P999us = float64(hist.ValueAtQuantile(50)), float64(hist.ValueAtQuantile(99)), float64(hist.ValueAtQuantile(99.9))
	if r.Lost > 0 {
		return r, fmt.Errorf("%d deliveries lost", r.Lost)
	}
	return r, nil
}

// publishPacket appends a QoS 0 PUBLISH of message seq sent at ts: the
// payload is seq, ts, then bytes derived from seq.
func publishPacket(dst []byte, seq uint64, ts int64, payload []byte) []byte {
	binary.BigEndian.PutUint64(payload, seq)
	binary.BigEndian.PutUint64(payload[8:], uint64(ts))
	for i := 16; i < len(payload); i++ {
		payload[i] = byte(seq) + byte(i)
	}
	n := 2 + len(topic) + len(payload)
	dst = append(dst, 0x30)
	for ; n >= 0x80; n >>= 7 {
		dst = append(dst, byte(n)|0x80)
	}
	dst = mqttString(append(dst, byte(n)), topic)
	return append(dst, payload...)
}

// checkPublish verifies one delivered packet byte for byte: a QoS 0
// PUBLISH on the topic, of message want, whose padding is right.
func checkPublish(p []byte, want uint64, size int) (seq uint64, ts int64, ok bool) {
	h := len(p) - size // header, Remaining Length, topic
	if p[0] != 0x30 || string(p[h-len(topic):h]) != topic {
		return 0, 0, false
	}
	seq, ts = binary.BigEndian.Uint64(p[h:]), int64(binary.BigEndian.Uint64(p[h+8:]))
	for i := 16; i < size; i++ {
		if p[h+i] != byte(seq)+byte(i) {
			return seq, ts, false
		}
	}
	return seq, ts, seq == want
}

// cpuTime is a process's user and system CPU time in ns, from /proc.
func cpuTime(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th of them.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * int64(time.Second) / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// rss is a process's resident set size in bytes, from /proc.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

var errUsage = errors.New("usage")
