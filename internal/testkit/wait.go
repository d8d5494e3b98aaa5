package testkit

import (
	"os/exec"
	"testing"
	"time"
)

// Eventually calls cond, sleeping every between calls, until it holds,
// and fails t once timeout has passed with the message format and args
// give. It must run on the test's goroutine.
func Eventually(t testing.TB, timeout, every time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(every)
	}
}

// EventuallyNil calls cond, sleeping every between calls, until it
// returns nil, and fails t once timeout has passed with cond's last error.
// It must run on the test's goroutine.
func EventuallyNil(t testing.TB, timeout, every time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(every)
	}
}

// RequireTool returns the path of a program the test runs, or fails the
// test naming the Debian package that provides it: a missing tool is an
// install step (.ci/run installs the package), never a reason to skip.
func RequireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("this test runs %s, which is not installed (%v): install the %s package, as .ci/run does", name, err, debianPackage)
	}
	return path
}
