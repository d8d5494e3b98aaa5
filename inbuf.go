package frameloop

import (
	"sync/atomic"

	"github.com/frameloop/frameloop/internal/bufpool"
)

// Input buffers and the budget that bounds them.
//
// A connection holds an input buffer (connState.in) only while a frame is
// unfinished, or while its reading is paused with bytes read and not yet
// handled. The sum over all connections is bounded by
// Config.MaxInputMemory: without a bound, N clients each announcing a
// maximum frame and sending all of it but the last byte would pin N
// maximum frames until the idle timeout.
//
// A buffer grows only as bytes arrive, so announcing a large frame costs
// no memory. But the budget charges the whole frame (its size class) as
// soon as the loop reads more of it than it has room for: a connection
// whose frame is charged can always finish it, so waiting for memory never
// deadlocks — a frame that completes frees its charge for the next. When
// the charge does not fit, the loop stops reading the connection (TCP flow
// control holds the client back) until memory is freed; no connection is
// closed for it.
//
// Bytes already read must be kept, whatever the budget says, so a stash
// may overdraw it by what one read brought; while the budget is nearly
// spent, reads shrink to tightRead bytes to keep that small.

// tightRead is the read size once the budget has less room left than one
// full read: it bounds what a connection may overdraw the budget by.
const tightRead = 4 << 10

// inputBudget is the server's bound on input memory, shared by its loops.
type inputBudget struct {
	limit int64 // 0: unlimited (nothing is counted)
	used  atomic.Int64
	// loops are woken when memory is released, if they have connections
	// waiting for it (loop.memWaiting).
	loops []*loop
}

// take charges n bytes if they fit.
func (b *inputBudget) take(n int64) bool {
	if b.limit == 0 {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// force charges n bytes whether they fit or not: bytes already read.
func (b *inputBudget) force(n int64) {
	if b.limit != 0 {
		b.used.Add(n)
	}
}

// give returns n bytes and wakes the loops with connections waiting.
func (b *inputBudget) give(n int64) {
	if b.limit == 0 || n == 0 {
		return
	}
	b.used.Add(-n)
	for _, l := range b.loops {
		if l.memWaiting.Load() > 0 {
			l.post(reqMemory)
		}
	}
}

// tight says whether less than one full read's room is left.
func (b *inputBudget) tight() bool {
	return b.limit != 0 && b.used.Load()+readBufferSize > b.limit
}

// newIn gives st an input buffer of at least size bytes holding data.
func (l *loop) newIn(st *connState, size int, data []byte) {
	st.in = bufpool.Get(size)
	st.in.B = append(st.in.B, data...)
	st.inCharge = uint32(cap(st.in.B))
	l.srv.inmem.force(int64(st.inCharge))
}

// growIn moves st's input into a buffer of at least size bytes. Within a
// frame's charge the growth is free; beyond, it is charged as read bytes.
func (l *loop) growIn(st *connState, size int) {
	nb := bufpool.Get(size)
	nb.B = append(nb.B, st.in.B...)
	bufpool.Put(st.in)
	st.in = nb
	if c := uint32(cap(nb.B)); c > st.inCharge {
		l.srv.inmem.force(int64(c - st.inCharge))
		st.inCharge = c
	}
}

// dropIn releases st's input buffer and its charge.
func (l *loop) dropIn(st *connState) {
	if st.in == nil {
		return
	}
	bufpool.Put(st.in)
	st.in = nil
	charge := st.inCharge
	st.inCharge = 0
	l.srv.inmem.give(int64(charge))
}

// releaseDetached releases an input buffer taken off its connection, and
// its charge.
func (l *loop) releaseDetached(b *bufpool.Buf, charge uint32) {
	bufpool.Put(b)
	l.srv.inmem.give(int64(charge))
}

// reserveIn charges st for a whole frame of total bytes, before reading
// more of it, and reports whether the budget had room.
func (l *loop) reserveIn(st *connState, total int) bool {
	want := uint32(bufpool.ClassSize(total))
	if want <= st.inCharge {
		return true
	}
	if !l.srv.inmem.take(int64(want - st.inCharge)) {
		return false
	}
	st.inCharge = want
	return true
}

// waitForMemory stops reading st until the budget has room for its frame.
func (l *loop) waitForMemory(st *connState) {
	if st.memPaused {
		return
	}
	st.memPaused = true
	l.stats.memPauses++
	l.memWait = append(l.memWait, connRef{st, st.gen})
	l.memWaiting.Add(1)
	l.setInterest(st)
}

// retryMemoryWaiters resumes, oldest first, the connections whose frames
// now fit the budget. It stops at the first that does not: a large frame
// is not overtaken forever by smaller ones.
func (l *loop) retryMemoryWaiters() {
	i := 0
	for ; i < len(l.memWait); i++ {
		r := l.memWait[i]
		st := r.st
		if st.gen != r.gen || !st.memPaused {
			continue
		}
		if need, ok := l.pendingFrame(st); ok && !l.reserveIn(st, need) {
			break
		}
		st.memPaused = false
		l.memWaiting.Add(-1)
		l.setInterest(st)
	}
	n := copy(l.memWait, l.memWait[i:])
	clear(l.memWait[n:])
	l.memWait = l.memWait[:n]
}
