package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Machine describes where the suite ran.
type Machine struct {
	CPUModel     string
	Cores        int // logical CPUs online
	Kernel       string
	GoVersion    string
	Peers        map[string]string // module path → version from bench/go.mod
	NofileSoft   uint64
	NofileHard   uint64
	PortRange    string
	FrameloopRev string
	CC           string // the C compiler's first line of --version
	TCPRmem      string // net.ipv4.tcp_rmem: min default max
	TCPWmem      string
}

// peerModules are the modules whose versions the report states.
var peerModules = []string{"github.com/panjf2000/gnet/v2", "github.com/lesismal/nbio"}

// cpuInfo returns the first CPU model name in /proc/cpuinfo and the number
// of logical CPUs it lists (runtime.NumCPU if it cannot be read).
func cpuInfo() (model string, cores int) {
	model, cores = "unknown", runtime.NumCPU()
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return model, cores
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "unknown" {
				model = strings.TrimSpace(v)
			}
		case "processor":
			n++
		}
	}
	if n > 0 {
		cores = n
	}
	return model, cores
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// goVersion asks the toolchain that builds the binaries.
func goVersion() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

// modVersions reads the required versions of mods from a go.mod file.
func modVersions(gomod string, mods []string) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(gomod)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) < 2 {
			continue
		}
		for _, m := range mods {
			if f[0] == m {
				out[m] = f[1]
			}
		}
	}
	return out
}

// gitRev describes the frameloop tree the binary was built from.
func gitRev(dir string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown (not a git checkout, or no commits yet)"
	}
	return strings.TrimSpace(string(out))
}

func collectMachine(benchRoot, frameloopRoot string) Machine {
	var rl syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	model, cores := cpuInfo()
	return Machine{
		CPUModel:     model,
		Cores:        cores,
		Kernel:       readTrim("/proc/sys/kernel/osrelease"),
		GoVersion:    goVersion(),
		Peers:        modVersions(filepath.Join(benchRoot, "go.mod"), peerModules),
		NofileSoft:   rl.Cur,
		NofileHard:   rl.Max,
		PortRange:    readTrim("/proc/sys/net/ipv4/ip_local_port_range"),
		FrameloopRev: gitRev(frameloopRoot),
		CC:           ccVersion(),
		TCPRmem:      readTrim("/proc/sys/net/ipv4/tcp_rmem"),
		TCPWmem:      readTrim("/proc/sys/net/ipv4/tcp_wmem"),
	}
}

// ccVersion is the first line of cc --version.
func ccVersion() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "cc", "--version").Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit. Calling
// Setrlimit also makes the children inherit the raised limit (Go otherwise
// restores the original soft limit in children).
func raiseNofile() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	return rl.Cur, rl.Max, nil
}
