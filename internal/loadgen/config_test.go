package loadgen

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/framing"
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
		{"--framing"}, {"--framing", ""}, {"--framing", " "}, {"--framing", "u33"}, {"--framing", "U32LE"},
		{"--framing", "length=5"}, {"--framing", "length=0"}, {"--framing", "offset=17"}, {"--framing", "offset=-1"},
		{"--framing", "u32le,offset=1"}, {"--framing", "length=4,"}, {"--framing", "length=4,length=2"},
		{"--framing", "order=middle"}, {"--framing", "varint-max=3"}, {"--framing", "length=varint,varint-max=11"},
		{"--framing", "length=1,adjust=-256"}, {"--framing", "adjust=2000000"}, {"--framing", "colour=blue"},
		{"--framing", "u8", "--size", "256"}, {"--framing", "u8", "--size", "0:300"}, {"--framing", "u8", "--size", "1048576"},
		{"--framing", "u16le", "--size", "65536"}, {"--framing", "u16be", "--size", "10:70000"},
		{"--framing", "mysql", "--size", "0"}, {"--framing", "mysql", "--size", "0:10"},
		{"--framing", "length=1,adjust=100"}, {"--framing", "length=1,adjust=-4", "--size", "252"},
		{"--framing", "length=varint,varint-max=1", "--size", "128"}, {"--framing", "length=varint,varint-max=2", "--size", "0:16384"},
		{"--framing", "u8", "--idle", "3", "--size", "300"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(args, &stdout, &stderr, nil)
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
	if code := Main([]string{"--help"}, &stdout, &stderr, nil); code != 0 || !strings.Contains(stdout.String(), "--pipeline") {
		t.Errorf("exit %d, stdout %q", code, stdout.String())
	}
	if !strings.Contains(stdout.String(), "--framing SPEC") {
		t.Errorf("--help does not list --framing: %q", stdout.String())
	}
	for _, p := range framing.Presets() {
		if !regexp.MustCompile(`\b` + p + `\b`).MatchString(stdout.String()) {
			t.Errorf("--help does not name the preset %s", p)
		}
	}
}

func TestParseArgsFraming(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the canonical spelling
	}{
		{nil, "u32le"},
		{[]string{"--framing", "u32le"}, "u32le"},
		{[]string{"--framing=u32be"}, "u32be"},
		{[]string{"--framing", " varint "}, "varint"},
		{[]string{"--framing", "mqtt", "--size", "0:1048576"}, "mqtt"},
		{[]string{"--framing", "grpc", "--rate", "100"}, "grpc"},
		{[]string{"--framing", "offset=1,length=4"}, "grpc"}, // order defaults to be
		{[]string{"--framing", "length=4,order=le"}, "u32le"},
		{[]string{"--framing", "length=2, order=le ,offset=3"}, "length=2,order=le,offset=3"},
		{[]string{"--framing", "u8", "--size", "255"}, "u8"},
		{[]string{"--framing", "u8", "--size", "0:255"}, "u8"},
		{[]string{"--framing", "u16be", "--size", "65535"}, "u16be"},
		{[]string{"--framing", "mysql", "--size", "1:1048576"}, "mysql"},
		{[]string{"--framing", "length=1,adjust=-4", "--size", "251"}, "length=1,adjust=-4"},
		{[]string{"--framing", "length=1,adjust=100", "--size", "100:355"}, "length=1,adjust=100"},
		{[]string{"--framing", "length=varint,varint-max=2", "--size", "16383"}, "length=varint,varint-max=2"},
		{[]string{"--framing", "u64be", "--idle", "2", "--size", "0"}, "u64be"},
	} {
		c, err := ParseArgs(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if got := c.Framing.String(); got != tc.want {
			t.Errorf("%q: framing %s, want %s", tc.args, got, tc.want)
		}
	}
	if c := DefaultConfig(); c.Framing.String() != "u32le" {
		t.Errorf("default framing %s", c.Framing)
	}
}

// A size the format cannot carry is refused in one line that names both
// flags and says what fits.
func TestFramingSizeMessages(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--framing", "u8", "--size", "256"}, []string{"--size 256", "--framing u8", "at most 255 payload bytes"}},
		{[]string{"--framing", "u8", "--size", "10:300"}, []string{"--size 10:300", "at most 255"}},
		{[]string{"--framing", "mysql", "--size", "0:64"}, []string{"--size 0:64", "--framing mysql", "at least 1 payload byte"}},
		{[]string{"--framing", "length=1,adjust=100"}, []string{"--size 64", "from 100 to 355 payload bytes"}},
		{[]string{"--framing", "length=varint,varint-max=1", "--size", "128"}, []string{"varint-max=1", "at most 127"}},
		{[]string{"--framing", "u33"}, []string{"--framing \"u33\"", "unknown preset", "u32le"}},
		{[]string{"--framing", "length=5"}, []string{"--framing \"length=5\"", "length must be"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(tc.args, &stdout, &stderr, nil); code != 2 {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		oneLine(t, stderr.String())
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%q: %q lacks %q", tc.args, stderr.String(), w)
			}
		}
	}
}
