package loadgen

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseArgsDefaults(t *testing.T) {
	c, err := ParseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if c.Addr != d.Addr || c.Conns != 50 || c.Pipeline != 1 || c.SizeMin != 64 || c.SizeMax != 64 ||
		c.Duration != 10*time.Second || c.Warmup != time.Second || c.Rate != 0 || c.Threads != 1 ||
		c.JSON || c.Plot != "" || c.ServerPID != 0 || c.Idle != 0 {
		t.Errorf("defaults: %+v", c)
	}
	if c.Target.Network != "tcp4" || c.Target.Port != 5882 {
		t.Errorf("target %+v", c.Target)
	}
}

func TestParseArgsForms(t *testing.T) {
	plot := filepath.Join(t.TempDir(), "lat.svg")
	c, err := ParseArgs([]string{"--addr=[::1]:9000", "--conns", "7", "--pipeline=3", "--size", "0:1048576",
		"--duration=2s", "--warmup", "0", "--rate", "1500.5", "--threads=2", "--json", "--plot", plot,
		"--server-pid", strconv.Itoa(os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	if c.Target.Network != "tcp6" || c.Conns != 7 || c.Pipeline != 3 || c.SizeMin != 0 || c.SizeMax != maxSize ||
		c.Duration != 2*time.Second || c.Warmup != 0 || c.Rate != 1500.5 || c.Threads != 2 || !c.JSON ||
		c.Plot != plot || c.ServerPID != os.Getpid() {
		t.Errorf("%+v", c)
	}
	c, err = ParseArgs([]string{"--addr", "unix:/tmp/x.sock", "--idle", "100", "--hold", "2s", "--size", "10"})
	if err != nil || c.Target.Path != "/tmp/x.sock" || c.Idle != 100 || c.Hold != 2*time.Second || c.SizeMax != 10 {
		t.Errorf("%+v %v", c, err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--conns", "0"}, {"--conns", "x"}, {"--conns", "-3"}, {"--conns", "99999999"},
		{"--pipeline", "0"}, {"--pipeline", "1.5"},
		{"--size", "-1"}, {"--size", "1048577"}, {"--size", "9:3"}, {"--size", "a:b"}, {"--size", "1:"}, {"--size", ""},
		{"--duration", "0"}, {"--duration", "-1s"}, {"--duration", "10"}, {"--warmup", "-1s"}, {"--grace", "2h"},
		{"--rate", "-5"}, {"--rate", "NaN"}, {"--rate", "fast"}, {"--rate", "+Inf"},
		{"--threads", "0"}, {"--threads", "4", "--conns", "2"},
		{"--addr", "nope"}, {"--addr", "127.0.0.1:0"}, {"--addr", "127.0.0.1:70000"}, {"--addr", "unix:"},
		{"--plot", "out.jpg"}, {"--plot", "/no/such/dir/x.png"},
		{"--server-pid", "x"}, {"--server-pid", "-2"}, {"--server-pid", "999999999"},
		{"--idle", "-1"}, {"--idle", "5", "--rate", "10"}, {"--idle", "5", "--conns", "10"}, {"--idle", "2", "--threads", "3"},
		{"--hold", "1s"}, {"--idle", "5", "--hold", "x"},
		{"--json=maybe"}, {"--nope"}, {"--duration"}, {"stray"}, {"--conns", "5", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		oneLine(t, stderr.String())
		if !strings.HasPrefix(stderr.String(), "frameloop bench: ") || stdout.Len() != 0 {
			t.Errorf("%q: stdout %q stderr %q", args, stdout.String(), stderr.String())
		}
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "--pipeline") {
		t.Errorf("exit %d, stdout %q", code, stdout.String())
	}
}
