//go:build unix

package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	platform := ", go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/frameloop/frameloop", Version: "v0.3.1"},
		Settings: []debug.BuildSetting{
			{Key: "-compiler", Value: "gc"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "3f2a9c1e5b7d9f0a1b2c3d4e5f60718293a4b5c6"},
			{Key: "vcs.time", Value: "2026-12-06T19:00:00Z"},
			{Key: "vcs.modified", Value: "false"},
		},
	}
	modified := *stamped
	modified.Settings = append(append([]debug.BuildSetting{}, stamped.Settings[:4]...), debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"release build from a checkout", stamped, true, "frameloop v0.3.1 3f2a9c1e5b7d 2026-12-06T19:00:00Z" + platform},
		{"uncommitted changes", &modified, true, "frameloop v0.3.1 3f2a9c1e5b7d 2026-12-06T19:00:00Z (modified)" + platform},
		{"go run: no VCS stamp", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true, "frameloop (devel)" + platform},
		{"test binary: no main version", &debug.BuildInfo{GoVersion: "go1.26.8"}, true, "frameloop (devel)" + platform},
		{"short revision", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}}, true, "frameloop (devel) abc" + platform},
		{"no build information", nil, false, "frameloop unknown, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH},
	} {
		if got := versionLine(tc.info, tc.ok); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	// The test binary's own build information: whatever it holds, a line.
	info, ok := debug.ReadBuildInfo()
	if got := versionLine(info, ok); !strings.HasPrefix(got, "frameloop ") || strings.Contains(got, "\n") {
		t.Errorf("this test binary: %q", got)
	}
}

// The real binary prints one line on stdout and exits 0 for --version,
// -version and the version subcommand, and the line agrees with the build
// information the go command reads from the same binary.
func TestVersionOfTheBinary(t *testing.T) {
	t.Parallel()
	bin := daemonBinary(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	var goVersion, modVersion, rev, at string
	for i, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case i == 0 && len(f) == 2:
			goVersion = f[1] // "BIN: go1.26.8"
		case len(f) >= 3 && f[0] == "mod":
			modVersion = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			rev = strings.TrimPrefix(f[1], "vcs.revision=")
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.time="):
			at = strings.TrimPrefix(f[1], "vcs.time=")
		}
	}
	if goVersion == "" || modVersion == "" {
		t.Fatalf("cannot read go version -m's output:\n%s", out)
	}
	want := []string{"frameloop " + modVersion, ", " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if rev != "" {
		want = append(want, " "+rev[:12]+" ", at)
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		r := runFrameloop(t, exitWait, args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("frameloop %s: exit %d, stderr %q", args[0], r.code, r.stderr)
		}
		if lines := splitLines(r.stdout); len(lines) != 1 || !strings.HasSuffix(r.stdout, "\n") {
			t.Fatalf("frameloop %s: stdout %q, want one line", args[0], r.stdout)
		}
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("frameloop %s: %q lacks %q (go version -m says:\n%s)", args[0], r.stdout, w, out)
			}
		}
		if !strings.HasPrefix(r.stdout, want[0]) {
			t.Errorf("frameloop %s: %q does not start with %q", args[0], r.stdout, want[0])
		}
	}
	if r := runFrameloop(t, exitWait, "version", "--help"); r.code != 0 || !strings.HasPrefix(r.stdout, "usage: frameloop version") {
		t.Errorf("frameloop version --help: exit %d, stdout %q", r.code, r.stdout)
	}
	r := runFrameloop(t, exitWait, "version", "extra")
	if r.code != 2 || len(r.stderrLines()) != 1 {
		t.Errorf("frameloop version extra: exit %d, stderr %q; want 2 and one line", r.code, r.stderr)
	}
	t.Logf("%s", runFrameloop(t, exitWait, "--version").stdout)
}
