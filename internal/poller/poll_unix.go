//go:build unix

package poller

import (
	"os"

	"golang.org/x/sys/unix"
)

// pollset is the portable backend: poll(2) over a dense array, with a pipe
// for wakeups. Each Wait costs O(descriptors), which is why it is not the
// default; it exists for platforms and sandboxes where nothing else works,
// and as a plain reference the other backends are tested against.
type pollset struct {
	fds   []unix.PollFd
	tags  []uint32
	index []int32 // fd -> position in fds, -1 when not watched
	wake  wakePipe
	start int // where the next scan begins, so that no descriptor starves
}

func newPoll() (Poller, error) {
	wp, err := openWakePipe()
	if err != nil {
		return nil, err
	}
	ps := &pollset{wake: wp}
	ps.fds = append(ps.fds, unix.PollFd{Fd: int32(wp.r), Events: unix.POLLIN})
	ps.tags = append(ps.tags, 0)
	return ps, nil
}

func (p *pollset) Name() string { return "poll" }

func pollEvents(in Interest) int16 {
	var e int16
	if in&Read != 0 {
		e |= unix.POLLIN
	}
	if in&Write != 0 {
		e |= unix.POLLOUT
	}
	return e
}

func (p *pollset) Add(fd int, tag uint32, in Interest) error {
	if fd < 0 {
		return os.NewSyscallError("poll add", unix.EBADF)
	}
	for fd >= len(p.index) {
		p.index = append(p.index, -1)
	}
	if p.index[fd] >= 0 {
		return os.NewSyscallError("poll add", unix.EEXIST)
	}
	p.index[fd] = int32(len(p.fds))
	p.fds = append(p.fds, unix.PollFd{Fd: int32(fd), Events: pollEvents(in)})
	p.tags = append(p.tags, tag)
	return nil
}

func (p *pollset) slot(fd int) int {
	if fd < 0 || fd >= len(p.index) {
		return -1
	}
	return int(p.index[fd])
}

func (p *pollset) Modify(fd int, tag uint32, _, in Interest) error {
	i := p.slot(fd)
	if i < 0 {
		return os.NewSyscallError("poll modify", unix.ENOENT)
	}
	p.fds[i].Events = pollEvents(in)
	p.tags[i] = tag
	return nil
}

func (p *pollset) Remove(fd int, _ Interest) error {
	i := p.slot(fd)
	if i < 0 {
		return os.NewSyscallError("poll remove", unix.ENOENT)
	}
	last := len(p.fds) - 1
	p.fds[i], p.tags[i] = p.fds[last], p.tags[last]
	p.index[p.fds[i].Fd] = int32(i)
	p.fds, p.tags = p.fds[:last], p.tags[:last]
	p.index[fd] = -1
	return nil
}

func (p *pollset) Wait(events []Event, timeoutMs int) (int, error) {
	ready, err := unix.Poll(p.fds, timeoutMs)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("poll", err)
	}
	n := 0
	total := len(p.fds)
	if p.start >= total {
		p.start = 0
	}
	next := 0
	for k := 0; k < total && ready > 0; k++ {
		i := (p.start + k) % total
		if n == len(events) {
			next = i
			break
		}
		pfd := &p.fds[i]
		re := pfd.Revents
		if re == 0 {
			continue
		}
		ready--
		pfd.Revents = 0
		if i == 0 {
			p.wake.drain()
			continue
		}
		var r uint8
		if re&unix.POLLIN != 0 {
			r |= Readable
		}
		if re&unix.POLLOUT != 0 {
			r |= Writable
		}
		if re&(unix.POLLERR|unix.POLLHUP) != 0 {
			r |= Hangup
		}
		if re&unix.POLLNVAL != 0 {
			r |= Invalid
		}
		events[n] = Event{Fd: pfd.Fd, Tag: p.tags[i], Ready: r}
		n++
	}
	// When more descriptors were ready than events had room for, the next
	// scan begins where this one stopped, so that none is starved.
	p.start = next
	return n, nil
}

func (p *pollset) Wake() error { return p.wake.wake() }

func (p *pollset) Close() error {
	p.wake.close()
	return nil
}
