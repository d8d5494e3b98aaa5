package poller

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	quiet   = 50 * time.Millisecond // how long "no event" is watched for
	patient = 5 * time.Second       // bound on waiting for an event that must come
)

// end is one side of a socket pair; close is idempotent so that a test may
// close it early and the cleanup never closes a reused descriptor.
type end struct{ fd int }

func (e *end) close() {
	if e.fd >= 0 {
		unix.Close(e.fd)
		e.fd = -1
	}
}

func (e *end) write(t *testing.T) {
	t.Helper()
	if _, err := unix.Write(e.fd, []byte("x")); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func pair(t *testing.T) (*end, *end) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	a, b := &end{fds[0]}, &end{fds[1]}
	t.Cleanup(func() { a.close(); b.close() })
	for _, fd := range fds {
		unix.CloseOnExec(fd)
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatalf("nonblock: %v", err)
		}
	}
	return a, b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// await waits until the flags reported for fd, merged over events, satisfy
// done. Every event must be for fd, carry tag, and have none of the
// forbidden flags.
func await(t *testing.T, p Poller, fd int, tag uint32, forbid uint8, done func(uint8) bool) uint8 {
	t.Helper()
	ev := make([]Event, 8)
	var got uint8
	for deadline := time.Now().Add(patient); time.Now().Before(deadline); {
		n, err := p.Wait(ev, 100)
		must(t, err)
		for _, e := range ev[:n] {
			if int(e.Fd) != fd || e.Tag != tag || e.Ready&forbid != 0 {
				t.Fatalf("event %+v, want fd %d tag %d without %#x", e, fd, tag, forbid)
			}
			got |= e.Ready
		}
		if done(got) {
			return got
		}
	}
	t.Fatalf("fd %d: got %#x after %v", fd, got, patient)
	return 0
}

func all(want uint8) func(uint8) bool { return func(r uint8) bool { return r&want == want } }

// silent checks that no event comes for d. Wait may return early with
// nothing (EINTR, a wakeup); it is called again until d has passed.
func silent(t *testing.T, p Poller, d time.Duration) {
	t.Helper()
	ev := make([]Event, 8)
	for deadline := time.Now().Add(d); ; {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		n, err := p.Wait(ev, int(left.Milliseconds())+1)
		must(t, err)
		if n != 0 {
			t.Fatalf("unexpected events %+v", ev[:n])
		}
	}
}

// waitBounded runs one Wait on another goroutine and fails if it has not
// returned within patient.
func waitBounded(t *testing.T, p Poller, ev []Event, timeoutMs int) int {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := p.Wait(ev, timeoutMs)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		must(t, r.err)
		return r.n
	case <-time.After(patient):
		// The goroutine stays blocked; goleak will report it too.
		t.Fatalf("Wait(%d) did not return within %v", timeoutMs, patient)
		return 0
	}
}

var backendTests = []struct {
	name string
	run  func(t *testing.T, p Poller)
}{
	{"read", func(t *testing.T, p Poller) {
		a, b := pair(t)
		must(t, p.Add(a.fd, 7, Read))
		silent(t, p, quiet)
		b.write(t)
		await(t, p, a.fd, 7, Writable, all(Readable))
	}},
	{"modify to write", func(t *testing.T, p Poller) {
		a, b := pair(t)
		must(t, p.Add(a.fd, 7, Read))
		b.write(t) // stays unread: read interest is what keeps it quiet
		await(t, p, a.fd, 7, Writable, all(Readable))
		must(t, p.Modify(a.fd, 7, Read, Write))
		await(t, p, a.fd, 7, Readable, all(Writable))
		must(t, p.Modify(a.fd, 7, Write, Read|Write))
		await(t, p, a.fd, 7, 0, all(Readable|Writable))
	}},
	{"modify to none", func(t *testing.T, p Poller) {
		a, b := pair(t)
		must(t, p.Add(a.fd, 7, Read|Write))
		b.write(t)
		await(t, p, a.fd, 7, 0, all(Readable|Writable))
		must(t, p.Modify(a.fd, 7, Read|Write, 0))
		silent(t, p, quiet)
		must(t, p.Modify(a.fd, 7, 0, Read))
		await(t, p, a.fd, 7, Writable, all(Readable))
	}},
	{"modify tag", func(t *testing.T, p Poller) {
		a, b := pair(t)
		must(t, p.Add(a.fd, 1, Read))
		b.write(t)
		await(t, p, a.fd, 1, Writable, all(Readable))
		// Read stays on under a new tag: its events must carry the new
		// tag too, not only those of the filter turned on.
		must(t, p.Modify(a.fd, 2, Read, Read|Write))
		await(t, p, a.fd, 2, 0, all(Readable|Writable))
		must(t, p.Modify(a.fd, 3, Read|Write, Read))
		await(t, p, a.fd, 3, Writable, all(Readable))
	}},
	{"add with none", func(t *testing.T, p Poller) {
		a, b := pair(t)
		must(t, p.Add(a.fd, 7, 0))
		b.write(t)
		silent(t, p, quiet)
		must(t, p.Modify(a.fd, 7, 0, Write))
		await(t, p, a.fd, 7, Readable, all(Writable))
	}},
	{"remove", func(t *testing.T, p Poller) {
		a, b := pair(t)
		must(t, p.Add(a.fd, 7, Read|Write))
		b.write(t)
		await(t, p, a.fd, 7, 0, all(Readable|Writable))
		must(t, p.Remove(a.fd, Read|Write))
		silent(t, p, quiet)
		b.close() // a hangup is no event either, once removed
		silent(t, p, quiet)
	}},
	{"remove before wait", func(t *testing.T, p Poller) {
		// Add, Modify and Remove with no Wait between (kqueue still holds
		// the changes), then the number is reused for a new descriptor
		// registered under another tag: only the new one may report.
		a, b := pair(t)
		b.write(t)
		must(t, p.Add(a.fd, 1, Read))
		must(t, p.Modify(a.fd, 1, Read, Read|Write))
		must(t, p.Remove(a.fd, Read|Write))
		fd := a.fd
		a.close()
		c, d := pair(t)
		if c.fd != fd {
			if err := unix.Dup2(c.fd, fd); err != nil {
				t.Fatalf("dup2: %v", err)
			}
			c.close()
			c.fd = fd
		}
		must(t, p.Add(c.fd, 2, Read))
		silent(t, p, quiet)
		d.write(t)
		await(t, p, c.fd, 2, Writable, all(Readable))
	}},
	{"peer close", func(t *testing.T, p Poller) {
		a, b := pair(t)
		must(t, p.Add(a.fd, 7, Read))
		b.close()
		await(t, p, a.fd, 7, Writable, func(r uint8) bool { return r&(Readable|Hangup) != 0 })
	}},
	{"closed without remove", func(t *testing.T, p Poller) {
		// Not the contract (Remove comes first), but it must not break
		// Wait: kqueue's queued Add fails inside kevent, which must be
		// skipped, not reported and not an error. poll says POLLNVAL.
		a, _ := pair(t)
		x, y := pair(t)
		must(t, p.Add(x.fd, 9, Read))
		must(t, p.Add(a.fd, 7, Read|Write))
		a.close()
		y.write(t)
		ev := make([]Event, 8)
		var got uint8
		for deadline := time.Now().Add(patient); got&Readable == 0 && time.Now().Before(deadline); {
			n, err := p.Wait(ev, 100)
			must(t, err)
			for _, e := range ev[:n] {
				switch {
				case int(e.Fd) == x.fd && e.Tag == 9:
					got |= e.Ready
				case e.Ready != Invalid:
					t.Fatalf("event %+v for a closed descriptor", e)
				}
			}
		}
		if got&Readable == 0 {
			t.Fatalf("fd %d never readable", x.fd)
		}
	}},
	{"wake", func(t *testing.T, p Poller) {
		a, _ := pair(t) // registered, never ready: nothing may be reported
		must(t, p.Add(a.fd, 7, Read))
		ev := make([]Event, 8)
		woke := make(chan error, 1)
		go func() { woke <- p.Wake() }()
		if n := waitBounded(t, p, ev, -1); n != 0 {
			t.Fatalf("wakeup returned events %+v", ev[:n])
		}
		must(t, <-woke)
	}},
	{"wakes coalesce", func(t *testing.T, p Poller) {
		a, _ := pair(t)
		must(t, p.Add(a.fd, 7, Read))
		var wg sync.WaitGroup
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.Wake(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		ev := make([]Event, 8)
		if n := waitBounded(t, p, ev, -1); n != 0 {
			t.Fatalf("wakeup returned events %+v", ev[:n])
		}
		if n := waitBounded(t, p, ev, 0); n != 0 {
			t.Fatalf("events %+v after the wakeup", ev[:n])
		}
		// A wakeup left behind would end every Wait at once.
		waits := 0
		for deadline := time.Now().Add(3 * quiet); time.Now().Before(deadline); waits++ {
			n, err := p.Wait(ev, int(quiet/time.Millisecond/2))
			must(t, err)
			if n != 0 {
				t.Fatalf("events %+v", ev[:n])
			}
		}
		if waits > 20 {
			t.Fatalf("%d waits in %v: the wakeup was not consumed", waits, 3*quiet)
		}
	}},
	{"no starvation", func(t *testing.T, p Poller) {
		// More ready descriptors than events has room for: all must be
		// reported in a few rounds, although none is ever drained.
		const nfd = 8
		tags := map[int32]uint32{}
		for i := range nfd {
			a, b := pair(t)
			b.write(t)
			must(t, p.Add(a.fd, uint32(100+i), Read))
			tags[int32(a.fd)] = uint32(100 + i)
		}
		seen := map[int32]bool{}
		ev := make([]Event, 3)
		for round := 0; len(seen) < nfd; round++ {
			if round == 50 {
				t.Fatalf("after %d rounds only %d of %d descriptors reported", round, len(seen), nfd)
			}
			n, err := p.Wait(ev, 1000)
			must(t, err)
			for _, e := range ev[:n] {
				if tag, ok := tags[e.Fd]; !ok || e.Tag != tag || e.Ready&Readable == 0 {
					t.Fatalf("event %+v", e)
				}
				seen[e.Fd] = true
			}
		}
	}},
}

func TestBackends(t *testing.T) {
	for _, name := range Backends() {
		t.Run(name, func(t *testing.T) {
			for _, tt := range backendTests {
				t.Run(tt.name, func(t *testing.T) {
					p, err := New(name)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { p.Close() })
					if p.Name() != name {
						t.Fatalf("Name() = %q, want %q", p.Name(), name)
					}
					tt.run(t, p)
				})
			}
		})
	}
}

func TestDefault(t *testing.T) {
	if Default() != Backends()[0] {
		t.Fatalf("Default() = %q, Backends() = %v", Default(), Backends())
	}
}

func TestUnknownBackend(t *testing.T) {
	if p, err := New("nope"); err == nil {
		p.Close()
		t.Fatal(`New("nope") succeeded`)
	}
}
