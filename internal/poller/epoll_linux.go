package poller

import (
	"encoding/binary"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

var backends = []string{"epoll", "poll"}

func init() { newEpoll = func() (Poller, error) { return openEpoll() } }

// epoll is level-triggered: a descriptor stays ready until drained, so the
// loop may read once per event and still never lose data. A descriptor
// with no interest is not reported while healthy; EPOLLERR and EPOLLHUP are
// reported whatever the interest, so the loop handles Hangup on paused
// connections too.
type epoll struct {
	epfd   int
	wakefd int // eventfd
	raw    []unix.EpollEvent
	wbuf   [8]byte
	busy   bool // the last Wait returned events
}

func openEpoll() (*epoll, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &epoll{epfd: epfd, wakefd: wakefd}
	binary.NativeEndian.PutUint64(p.wbuf[:], 1)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd), Pad: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		p.Close()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return p, nil
}

func (p *epoll) Name() string { return "epoll" }

func epollEvents(in Interest) uint32 {
	var e uint32
	if in&Read != 0 {
		e |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if in&Write != 0 {
		e |= unix.EPOLLOUT
	}
	return e
}

func (p *epoll) ctl(op, fd int, tag uint32, in Interest) error {
	// Pad carries the tag: epoll_data is 64 bits and x/sys splits it
	// into Fd and Pad.
	ev := unix.EpollEvent{Events: epollEvents(in), Fd: int32(fd), Pad: int32(tag)}
	for {
		err := unix.EpollCtl(p.epfd, op, fd, &ev)
		if err != unix.EINTR {
			if err != nil {
				return os.NewSyscallError("epoll_ctl", err)
			}
			return nil
		}
	}
}

func (p *epoll) Add(fd int, tag uint32, in Interest) error {
	return p.ctl(unix.EPOLL_CTL_ADD, fd, tag, in)
}

func (p *epoll) Modify(fd int, tag uint32, _, in Interest) error {
	return p.ctl(unix.EPOLL_CTL_MOD, fd, tag, in)
}

func (p *epoll) Remove(fd int, _ Interest) error {
	return p.ctl(unix.EPOLL_CTL_DEL, fd, 0, 0)
}

func (p *epoll) Wait(events []Event, timeoutMs int) (int, error) {
	if cap(p.raw) < len(events) {
		p.raw = make([]unix.EpollEvent, len(events))
	}
	raw := p.raw[:len(events)]
	// A busy loop usually finds events waiting, or gets some within a
	// moment. Waiting with a raw system call keeps the loop's P: a blocking
	// call goes through the scheduler, which hands the P of a thread locked
	// to its loop to another thread after 20µs, and taking it back costs
	// futex wakeups and context switches on every pass. So a loop that
	// found events last time waits up to rawWaitMs holding its P, and only
	// a loop that stays idle longer blocks through the scheduler, letting
	// other goroutines run. (The runtime still preempts a goroutine that
	// runs for 10ms, which interrupts a raw wait with EINTR, so nothing
	// starves.)
	timeout := 0
	if p.busy && timeoutMs != 0 {
		timeout = rawWaitMs
		if timeoutMs > 0 {
			timeout = min(timeout, timeoutMs)
		}
	}
	n, errno := epollWaitRaw(p.epfd, raw, timeout)
	if n == 0 && errno == 0 && timeoutMs != timeout {
		rest := timeoutMs
		if rest > 0 {
			rest -= timeout
		}
		var err error
		n, err = unix.EpollWait(p.epfd, raw, rest)
		errno, _ = err.(unix.Errno)
	}
	p.busy = n > 0
	if errno != 0 {
		if errno == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("epoll_wait", errno)
	}
	j := 0
	for i := range n {
		ev := &raw[i]
		if int(ev.Fd) == p.wakefd {
			p.drainWake()
			continue
		}
		var r uint8
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
			r |= Readable
		}
		if ev.Events&unix.EPOLLOUT != 0 {
			r |= Writable
		}
		if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			r |= Hangup
		}
		events[j] = Event{Fd: ev.Fd, Tag: uint32(ev.Pad), Ready: r}
		j++
	}
	return j, nil
}

// rawWaitMs is how long a busy loop waits without releasing its P.
const rawWaitMs = 1

func epollWaitRaw(epfd int, raw []unix.EpollEvent, timeoutMs int) (int, unix.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&raw[0])), uintptr(len(raw)), uintptr(timeoutMs), 0, 0)
	return int(n), errno
}

func (p *epoll) drainWake() {
	var buf [8]byte
	for {
		_, err := unix.Read(p.wakefd, buf[:])
		if err != unix.EINTR {
			return
		}
	}
}

func (p *epoll) Wake() error {
	for {
		_, err := unix.Write(p.wakefd, p.wbuf[:])
		switch err {
		case nil, unix.EAGAIN: // EAGAIN: the counter is saturated, a wakeup is pending anyway
			return nil
		case unix.EINTR:
			continue
		default:
			return os.NewSyscallError("eventfd write", err)
		}
	}
}

func (p *epoll) Close() error {
	unix.Close(p.wakefd)
	return unix.Close(p.epfd)
}
