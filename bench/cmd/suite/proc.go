package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// children tracks the process groups the suite started, so that they are
// killed whatever way the suite leaves (error, Ctrl-C, panic in a report).
var children = struct {
	sync.Mutex
	pgids map[int]string
}{pgids: map[int]string{}}

func trackChild(pgid int, what string) {
	children.Lock()
	children.pgids[pgid] = what
	children.Unlock()
}

func untrackChild(pgid int) {
	children.Lock()
	delete(children.pgids, pgid)
	children.Unlock()
}

// killAllChildren SIGKILLs every process group still tracked.
func killAllChildren() {
	children.Lock()
	defer children.Unlock()
	for pgid := range children.pgids {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		delete(children.pgids, pgid)
	}
}

// childAttrs puts a child in its own process group (so that it and anything
// it starts can be signalled together and a terminal's Ctrl-C reaches only
// the suite, which then cleans up in order), and has the kernel kill it if
// the suite dies without cleaning up.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// ringLog keeps the last lines a child printed, for error messages.
type ringLog struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func (r *ringLog) add(l string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(l) > 300 {
		l = l[:300] + "…"
	}
	r.lines = append(r.lines, l)
	if len(r.lines) > r.max {
		r.lines = r.lines[len(r.lines)-r.max:]
	}
}

// Write lets a ringLog collect a child's output directly.
func (r *ringLog) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			r.add(l)
		}
	}
	return len(p), nil
}

// last returns the last n lines joined with " | ".
func (r *ringLog) last(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ls := r.lines
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}

// serverProc is a running server under test.
type serverProc struct {
	name    string
	addr    string
	cmd     *exec.Cmd
	log     *ringLog
	exited  chan struct{} // closed once the process has been reaped
	waitErr error
}

// Pid is the server's process id (taskset execs the server, so it is the
// server's own).
func (s *serverProc) Pid() int { return s.cmd.Process.Pid }

// startServer starts argv pinned to cpus with GOMAXPROCS=1 and waits, at
// most readyTimeout, for the line that contains "listening".
func startServer(ctx context.Context, name, addr, cpus string, argv []string, readyTimeout time.Duration) (*serverProc, error) {
	args := append([]string{"-c", cpus}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = childAttrs()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	pw.Close()
	trackChild(cmd.Process.Pid, name)
	s := &serverProc{name: name, addr: addr, cmd: cmd, log: &ringLog{max: 20}, exited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := false
		for sc.Scan() {
			l := sc.Text()
			s.log.add(l)
			if !once && strings.Contains(l, "listening") {
				once = true
				close(ready)
			}
		}
	}()
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return s, nil
	case <-s.exited:
		untrackChild(cmd.Process.Pid)
		return nil, fmt.Errorf("%s exited before it logged 'listening' (%v): %s", name, s.waitErr, s.log.last(3))
	case <-timer.C:
		_ = s.stop(2 * time.Second)
		return nil, fmt.Errorf("%s did not log 'listening' within %s: %s", name, readyTimeout, s.log.last(3))
	case <-ctx.Done():
		_ = s.stop(2 * time.Second)
		return nil, ctx.Err()
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group,
// and checks that the process is reaped, its group is empty and its port
// no longer accepts connections.
func (s *serverProc) stop(grace time.Duration) error {
	pid := s.cmd.Process.Pid
	defer untrackChild(pid)
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	killed := false
	select {
	case <-s.exited:
	case <-time.After(grace):
		killed = true
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("%s (pid %d) still running 5s after SIGKILL", s.name, pid)
		}
	}
	// Anything left in its process group goes too.
	if err := syscall.Kill(-pid, 0); err == nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		deadline := time.Now().Add(5 * time.Second)
		for syscall.Kill(-pid, 0) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s (pid %d): processes remain in its group after SIGKILL", s.name, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) is gone but %s still accepts connections", s.name, pid, s.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if killed {
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", s.name, grace)
	}
	return nil
}

// portPicker hands out loopback ports that were free when asked, never the
// same one twice in a suite run.
type portPicker struct {
	used map[int]bool
}

func (p *portPicker) next() (string, error) {
	if p.used == nil {
		p.used = map[int]bool{}
	}
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("finding a free port: %v", err)
		}
		addr := ln.Addr().(*net.TCPAddr)
		ln.Close()
		if !p.used[addr.Port] {
			p.used[addr.Port] = true
			return addr.String(), nil
		}
	}
	return "", errors.New("finding a free port: the kernel keeps handing out used ones")
}
