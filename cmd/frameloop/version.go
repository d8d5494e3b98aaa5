package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// runVersion is "frameloop version" and "frameloop --version".
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprintln(stdout, "usage: frameloop version (or frameloop --version): the build's version, commit, Go release and platform")
			return 0
		}
		fmt.Fprintf(stderr, "frameloop version: unexpected argument %q\n", args[0])
		return 2
	}
	info, ok := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionLine(info, ok))
	return 0
}

// versionLine is one line naming the build: the module version, the VCS
// revision and commit time when the binary was built in a checkout (with
// "modified" for uncommitted changes), then the Go release and platform,
// e.g. "frameloop v0.0.0-2026...-3f2a9c1abcde 3f2a9c1abcde
// 2026-12-06T19:00:00Z, go1.26.8 linux/amd64". It prints what is known:
// go run and test binaries carry no VCS stamp, and without build
// information at all the version is "unknown".
func versionLine(info *debug.BuildInfo, ok bool) string {
	parts := []string{"frameloop"}
	goVersion := runtime.Version()
	if !ok || info == nil {
		parts = append(parts, "unknown")
	} else {
		v := info.Main.Version
		if v == "" {
			v = "(devel)"
		}
		parts = append(parts, v)
		var rev, at, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			parts = append(parts, rev[:min(len(rev), 12)])
		}
		if at != "" {
			parts = append(parts, at)
		}
		if modified == "true" {
			parts = append(parts, "(modified)")
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
	}
	return strings.Join(parts, " ") + ", " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}
