//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }

// selfCPU is this process's CPU time (user + system, all threads, those
// that exited included) in nanoseconds, from getrusage; -1 if unavailable.
func selfCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// procSchedNs is the time process pid's threads have spent on a CPU, in
// nanoseconds: the sum of the first field of /proc/PID/task/*/schedstat.
// (A thread that exits takes its time with it; Go's runtime keeps its
// threads.) -1 if unavailable.
func procSchedNs(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return -1
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return -1
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		sum += v
	}
	return sum
}

// procStatNs is utime + stime of process pid from /proc/PID/stat, in
// nanoseconds (10 ms ticks); -1 if unavailable.
func procStatNs(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (ut + st) * 10_000_000 // USER_HZ is 100
}

// procRSS is process pid's VmRSS in bytes; -1 if unavailable.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return v << 10
				}
			}
		}
	}
	return -1
}

// server is a running server under test.
type server struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string // its last lines of output
	exited chan struct{}
	err    error
}

func (s *server) add(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l)
	if len(s.lines) > 10 {
		s.lines = s.lines[1:]
	}
}

func (s *server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, " | ")
}

// startServer starts argv pinned with taskset to cpus, GOMAXPROCS=1, in its
// own process group (killed with the bench if it dies), and waits at most
// timeout for its line containing "listening".
func startServer(name, addr, cpus string, argv []string, timeout time.Duration) (*server, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpus}, argv...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
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
	s := &server{name: name, addr: addr, cmd: cmd, exited: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := false
		for sc.Scan() {
			s.add(sc.Text())
			if !once && strings.Contains(sc.Text(), "listening") {
				once = true
				close(ready)
			}
		}
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("%s exited before it logged 'listening' (%v): %s", name, s.err, s.output())
	case <-time.After(timeout):
		_ = s.stop(2 * time.Second)
		return nil, fmt.Errorf("%s did not log 'listening' within %s: %s", name, timeout, s.output())
	}
}

// stop sends SIGTERM, SIGKILLs the process group after grace, and checks
// that the port no longer accepts connections.
func (s *server) stop(grace time.Duration) error {
	pid := s.cmd.Process.Pid
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-s.exited:
	case <-time.After(grace):
		err = fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", s.name, grace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // anything left in its group
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, derr := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if derr != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is gone but %s still accepts connections", s.name, s.addr)
		}
	}
	return err
}

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
