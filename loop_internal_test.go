package frameloop

import (
	"net"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/poller"
	"github.com/frameloop/frameloop/internal/sock"
	"golang.org/x/sys/unix"
)

// newTestLoop returns a loop of a listening one-loop server, not running:
// the test drives it by hand. It is torn down at the end of the test.
func newTestLoop(t *testing.T) *loop {
	t.Helper()
	s, err := New(EchoHandler{}, Config{Addr: "127.0.0.1:0", Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	loops, err := s.buildLoops()
	if err != nil {
		t.Fatal(err)
	}
	s.loops, s.inmem.loops, s.lnFds = loops, loops, nil
	t.Cleanup(loops[0].teardown)
	return loops[0]
}

// socketFd returns one end of a fresh socket pair; the other end is closed
// when the test ends.
func socketFd(t *testing.T) int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	return fds[0]
}

// A recycled state never carries a tag issued before: with a generation
// counter per state, a fresh state's first tag equals a recycled one's
// old tag, and an event left over from the old connection on the same
// descriptor would reach the new one.
func TestStaleEventNeverReachesARecycledConnection(t *testing.T) {
	l := newTestLoop(t)
	issued := map[uint32]bool{}
	note := func(st *connState) {
		if issued[st.gen] {
			t.Fatalf("generation %d issued twice", st.gen)
		}
		issued[st.gen] = true
	}
	fdA, fdHeld := socketFd(t), socketFd(t)
	a := l.open(fdA, sock.Addr{})
	note(a)
	staleTag := a.gen
	l.closeNow(a, ReasonLocal, nil)

	// a's state goes to another connection; then a fresh state on a's old
	// descriptor number.
	held := l.open(fdHeld, sock.Addr{})
	note(held)
	fdB := socketFd(t)
	if fdB != fdA {
		t.Fatalf("descriptor %d not reused (got %d): the kernel gives the lowest free one", fdA, fdB)
	}
	b := l.open(fdB, sock.Addr{})
	note(b)
	genB := b.gen
	l.dispatch(poller.Event{Fd: int32(fdB), Tag: staleTag, Ready: poller.Invalid})
	if b.gen != genB || b.phase == phaseFree {
		t.Fatalf("an event left over from the closed connection closed the one now on its descriptor")
	}
	for range 1000 {
		st := l.open(socketFd(t), sock.Addr{})
		note(st)
		l.closeNow(st, ReasonLocal, nil)
	}
}

// An accept error that concerns one connection (a firewall's EPERM, a
// network error passed on by accept, an aborted connection) is skipped:
// the next connection is accepted at once. Only running out of resources,
// or a broken listener, pauses accepting.
func TestAcceptErrorOfOneConnectionDoesNotPauseAccepting(t *testing.T) {
	for _, tc := range []struct {
		err    error
		pauses bool
	}{
		{unix.EPERM, false}, {unix.ENETUNREACH, false}, {unix.ECONNABORTED, false}, {unix.EHOSTUNREACH, false},
		{unix.EPROTO, false}, {unix.EMFILE, true}, {unix.ENFILE, true}, {unix.ENOBUFS, true}, {unix.EBADF, true},
	} {
		t.Run(tc.err.(unix.Errno).Error(), func(t *testing.T) {
			l := newTestLoop(t)
			failed := false
			real := l.accept
			l.accept = func(lfd int) (int, sock.Addr, error) {
				if !failed {
					failed = true
					return -1, sock.Addr{}, tc.err
				}
				return real(lfd)
			}
			c, err := net.DialTimeout("tcp", l.srv.bound.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l.now = l.clock()
			l.acceptReady()
			paused := l.ln.retryAt != 0
			if paused != tc.pauses {
				t.Errorf("after %v: accepting paused = %v, want %v", tc.err, paused, tc.pauses)
			}
			if want := map[bool]int{false: 1, true: 0}[tc.pauses]; l.nconns != want {
				t.Errorf("after %v: %d connections accepted in the same pass, want %d", tc.err, l.nconns, want)
			}
		})
	}
}
