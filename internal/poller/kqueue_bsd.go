//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package poller

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var backends = []string{"kqueue", "poll"}

func init() { newKqueue = func() (Poller, error) { return openKqueue() } }

// kqueue watches each descriptor with two filters, EVFILT_READ and
// EVFILT_WRITE, both level-triggered like epoll here: a filter stays ready
// until drained, so an event the loop leaves unhandled is reported again.
//
// Add and Modify only queue changes; the queue rides on the next Wait's
// kevent call, so a pass that arms and disarms interest for many
// connections costs no extra system calls.
type kqueue struct {
	kq      int
	changes []change
	tags    []uint32        // fd -> tag last given; Modify re-tags only when it changed
	in      []unix.Kevent_t // the changes as the kernel reads them
	out     []unix.Kevent_t
	del     []unix.Kevent_t // Remove's two EV_DELETEs
	ts      unix.Timespec
	waker   // EVFILT_USER, or a pipe where x/sys has no EVFILT_USER
}

// change is a queued kevent, kept as plain data until Wait: the x/sys
// field types differ between systems, and the Udata word must not be
// handled as a Go pointer (see keventBuf).
type change struct {
	fd     int32
	filter int16
	flags  uint16
	tag    uint32
	fresh  bool // queued by Add: the kernel has never seen this registration
}

func openKqueue() (*kqueue, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, os.NewSyscallError("kqueue", err)
	}
	unix.CloseOnExec(kq)
	p := &kqueue{kq: kq, del: keventBuf(2)}
	if err := p.openWake(); err != nil {
		unix.Close(kq)
		return nil, err
	}
	return p, nil
}

func (p *kqueue) Name() string { return "kqueue" }

// keventBuf returns n zeroed kevents in memory the garbage collector does
// not scan. Udata holds a tag, not an address, but x/sys types it *byte on
// most systems; in memory the collector scans, a tag that happened to fall
// inside the Go heap (likely on 32-bit systems) would be taken for a
// pointer, and a bad one is fatal. So the buffer is allocated as []uint64,
// and Udata is only ever read and written as a uintptr through udata.
func keventBuf(n int) []unix.Kevent_t {
	size := int(unsafe.Sizeof(unix.Kevent_t{}))
	buf := make([]uint64, (max(n, 1)*size+7)/8)
	return unsafe.Slice((*unix.Kevent_t)(unsafe.Pointer(unsafe.SliceData(buf))), n)
}

// udata is a kevent's user-data word as an integer. It is void* in C and
// pointer-sized on every system (x/sys: *byte, or int64/int32 on NetBSD),
// which the array lengths below check at compile time, so one view serves
// all of them.
func udata(ev *unix.Kevent_t) *uintptr { return (*uintptr)(unsafe.Pointer(&ev.Udata)) }

var (
	_ [unsafe.Sizeof(unix.Kevent_t{}.Udata) - unsafe.Sizeof(uintptr(0))]byte
	_ [unsafe.Sizeof(uintptr(0)) - unsafe.Sizeof(unix.Kevent_t{}.Udata)]byte
)

func (p *kqueue) queue(fd int, filter int16, flags uint16, tag uint32, fresh bool) {
	p.changes = append(p.changes, change{fd: int32(fd), filter: filter, flags: flags, tag: tag, fresh: fresh})
}

func (p *kqueue) setTag(fd int, tag uint32) (changed bool) {
	for fd >= len(p.tags) {
		p.tags = append(p.tags, 0)
	}
	changed = p.tags[fd] != tag
	p.tags[fd] = tag
	return changed
}

// Add registers both filters, the unwanted one disabled, so that between
// Add and Remove both always exist: Modify then only enables and
// disables, and Remove knows what to delete without asking the kernel.
func (p *kqueue) Add(fd int, tag uint32, in Interest) error {
	if fd < 0 {
		return os.NewSyscallError("kevent", unix.EBADF)
	}
	p.setTag(fd, tag)
	p.queue(fd, unix.EVFILT_READ, addFlags(in&Read != 0), tag, true)
	p.queue(fd, unix.EVFILT_WRITE, addFlags(in&Write != 0), tag, true)
	return nil
}

func addFlags(on bool) uint16 {
	if on {
		return unix.EV_ADD | unix.EV_ENABLE
	}
	return unix.EV_ADD | unix.EV_DISABLE
}

// Modify queues a change only for a filter whose state changes, or that
// stays enabled under a new tag: the kernel updates udata only when the
// filter is added again. A disabled filter keeps its stale tag
// harmlessly; it is re-tagged when enabled.
func (p *kqueue) Modify(fd int, tag uint32, from, to Interest) error {
	if fd < 0 {
		return os.NewSyscallError("kevent", unix.EBADF)
	}
	retag := p.setTag(fd, tag)
	for _, f := range [2]struct {
		in     Interest
		filter int16
	}{{Read, unix.EVFILT_READ}, {Write, unix.EVFILT_WRITE}} {
		was, is := from&f.in != 0, to&f.in != 0
		switch {
		case is && (!was || retag):
			p.queue(fd, f.filter, unix.EV_ADD|unix.EV_ENABLE, tag, false)
		case was && !is:
			p.queue(fd, f.filter, unix.EV_DISABLE, tag, false)
		}
	}
	return nil
}

// Remove first drops fd's queued changes: fd is about to be closed, and
// its number may be reused and registered again before the next Wait,
// when stale changes would hit the new descriptor. It then deletes both
// filters at once rather than leaving it to close, since the caller may
// keep fd open. If fd's Add was still queued, the kernel never saw it and
// there is nothing to delete.
func (p *kqueue) Remove(fd int, _ Interest) error {
	fresh := false
	kept := p.changes[:0]
	for _, c := range p.changes {
		if int(c.fd) == fd {
			fresh = fresh || c.fresh
			continue
		}
		kept = append(kept, c)
	}
	p.changes = kept
	if fresh {
		return nil
	}
	unix.SetKevent(&p.del[0], fd, unix.EVFILT_READ, unix.EV_DELETE)
	unix.SetKevent(&p.del[1], fd, unix.EVFILT_WRITE, unix.EV_DELETE)
	// ENOENT: the queued Add failed in the kernel (an EV_ERROR that Wait
	// skipped), so nothing was registered.
	if err := p.control(p.del); err != nil && err != unix.ENOENT {
		return os.NewSyscallError("kevent", err)
	}
	return nil
}

// control applies changes at once, with no event list: kevent then cannot
// block, and a failing change fails the call (and stops the rest).
func (p *kqueue) control(changes []unix.Kevent_t) error {
	for {
		_, err := unix.Kevent(p.kq, changes, nil, nil)
		// On EINTR the changes have been applied; retrying is harmless,
		// as every change made through here is idempotent or ENOENT.
		if err != unix.EINTR {
			return err
		}
	}
}

func (p *kqueue) Wait(events []Event, timeoutMs int) (int, error) {
	if len(events) == 0 {
		return 0, os.NewSyscallError("kevent", unix.EINVAL)
	}
	nch := len(p.changes)
	if len(p.in) < nch {
		p.in = keventBuf(max(nch, 2*len(p.in)))
	}
	for i, c := range p.changes {
		k := &p.in[i]
		unix.SetKevent(k, int(c.fd), int(c.filter), int(c.flags))
		k.Fflags, k.Data = 0, 0
		*udata(k) = uintptr(c.tag)
	}
	// A change that fails is reported in the event list as EV_ERROR, one
	// slot each; when no slot is left the kernel abandons the rest of the
	// changelist and fails the call. So the list is never shorter than the
	// changelist. (EV_RECEIPT is no help here: any receipt makes kevent
	// return at once without waiting.)
	size := max(len(events), nch)
	if len(p.out) < size {
		p.out = keventBuf(size)
	}
	var ts *unix.Timespec
	if timeoutMs >= 0 {
		p.ts = unix.NsecToTimespec(int64(timeoutMs) * int64(time.Millisecond))
		ts = &p.ts
	}
	n, err := unix.Kevent(p.kq, p.in[:nch], p.out[:size], ts)
	if err != nil && err != unix.EINTR {
		// The changes stay queued: resubmitting them is harmless.
		return 0, os.NewSyscallError("kevent", err)
	}
	p.changes = p.changes[:0] // applied, on EINTR too
	if err != nil {
		return 0, nil
	}
	j := 0
	for i := range n {
		ev := &p.out[i]
		if p.isWake(ev) {
			p.drainWake()
			continue
		}
		var r uint8
		switch {
		case ev.Flags&unix.EV_ERROR != 0:
			// kevent sets EV_ERROR only on the result of a change (here
			// a batched one whose fd was closed, say): never readiness.
			// Were one to come with no change submitted, it would be
			// about the fd itself; the loop reads to learn more.
			if nch > 0 {
				continue
			}
			r = Hangup
		case ev.Filter == unix.EVFILT_READ:
			// EV_EOF alone is the peer's FIN, which epoll reports as
			// EPOLLRDHUP, readable only: the read returns the EOF. An
			// error (in fflags) is a hangup, as EPOLLERR|EPOLLHUP is.
			r = Readable
			if ev.Flags&unix.EV_EOF != 0 && ev.Fflags != 0 {
				r |= Hangup
			}
		case ev.Filter == unix.EVFILT_WRITE:
			// EV_EOF here means nothing more can be sent: the connection
			// is gone, as with EPOLLHUP.
			r = Writable
			if ev.Flags&unix.EV_EOF != 0 {
				r |= Hangup
			}
		default:
			continue
		}
		// Only a changelist longer than events makes room for more than
		// fit. What does not fit is dropped: level-triggered filters are
		// queued again and report it on the next Wait.
		if j == len(events) {
			continue
		}
		// Read and write come as two events; the loop handles each.
		events[j] = Event{Fd: int32(ev.Ident), Tag: uint32(*udata(ev)), Ready: r}
		j++
	}
	return j, nil
}

func (p *kqueue) Close() error {
	p.closeWake()
	return unix.Close(p.kq)
}
