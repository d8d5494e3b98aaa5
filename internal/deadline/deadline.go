// Package deadline keeps intrusive lists of deadlines, one list per
// duration. Because every entry of a list is set to now+d with a clock that
// never goes back, appending keeps a list sorted: its head is the next
// deadline, expiry pops from the head, and touching an entry moves it to the
// tail — all O(1), with no timer or allocation per entry and no scan of the
// entries that are not due.
package deadline

import "time"

// Entry is embedded in the object it times; the owner finds itself from
// the Entry it gets back (for instance by embedding it as its first field),
// so an entry costs 24 bytes and no allocation. An Entry is in at most one
// list at a time.
type Entry struct {
	prev, next *Entry
	at         int64
}

// Linked reports whether e is in a list.
func (e *Entry) Linked() bool { return e.next != nil }

// Deadline is when e expires, in the clock the list was touched with.
func (e *Entry) Deadline() int64 { return e.at }

// Remove takes e out of its list; it does nothing if e is in none.
func (e *Entry) Remove() {
	if e.next == nil {
		return
	}
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

// List holds entries that all share one duration. The zero List is not
// ready; call Init. A List must not be copied after Init.
type List struct {
	root Entry // sentinel: root.next is the head, root.prev the tail
	d    int64
}

// Init empties l and sets its duration.
func (l *List) Init(d time.Duration) {
	l.root.next, l.root.prev = &l.root, &l.root
	l.d = int64(d)
}

// Duration is the list's duration.
func (l *List) Duration() time.Duration { return time.Duration(l.d) }

// Touch sets e's deadline to now plus the list's duration and moves e to
// the tail of l, taking it out of whichever list held it. now must not be
// earlier than any now l was touched with before.
func (l *List) Touch(e *Entry, now int64) {
	if e.next != nil {
		if e.next == &l.root && e.at == now+l.d {
			return // already last with this deadline
		}
		e.Remove()
	}
	e.at = now + l.d
	tail := l.root.prev
	e.prev, e.next = tail, &l.root
	tail.next = e
	l.root.prev = e
}

// Next returns the earliest deadline in l; ok is false when l is empty.
func (l *List) Next() (at int64, ok bool) {
	if l.root.next == &l.root {
		return 0, false
	}
	return l.root.next.at, true
}

// PopExpired removes and returns the head of l if its deadline is at or
// before now, and nil otherwise.
func (l *List) PopExpired(now int64) *Entry {
	head := l.root.next
	if head == &l.root || head.at > now {
		return nil
	}
	head.Remove()
	return head
}
