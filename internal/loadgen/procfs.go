package loadgen

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// clockTicksPerSec is USER_HZ, the unit of utime and stime in /proc/P/stat.
// The kernel fixes it at 100 on every architecture Go runs on (it is not
// CONFIG_HZ), and sysconf(_SC_CLK_TCK) merely reports it; a constant avoids
// cgo for the same answer.
const clockTicksPerSec = 100

// procCPU is the CPU time (user + system) process pid has used, in
// nanoseconds, from /proc/pid/stat. Its resolution is one tick, 10 ms.
func procCPU(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat("/proc/self/stat"); serr != nil {
				return 0, errors.New("reading another process's CPU time needs /proc (Linux)")
			}
			return 0, errors.New("no such process")
		}
		return 0, err
	}
	// The command name (field 2) is in parentheses and may itself contain
	// spaces and parentheses; the fields after the last ')' are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so utime (field 14) is f[11] and stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return (ut + st) * (1e9 / clockTicksPerSec), nil
}

// procRSS is the resident set size of process pid in bytes (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest) // "12345 kB"
		if len(f) == 2 && f[1] == "kB" {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return kb * 1024, nil
			}
		}
		break
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS line", pid)
}

// selfCPU is the CPU time (user + system) this process has used, all
// threads together, in nanoseconds.
func selfCPU() (int64, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, os.NewSyscallError("getrusage", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), nil
}

// ephemeralPorts is how many local ports the kernel hands out to outgoing
// connections from one source address.
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && hi >= lo {
				return hi - lo + 1
			}
		}
	}
	return 65535 - 49152 + 1 // the IANA range, which the BSDs use
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit and returns
// the limit now in force.
func raiseFileLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, os.NewSyscallError("getrlimit", err)
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
			rl = want
		}
	}
	return uint64(rl.Cur), nil
}
