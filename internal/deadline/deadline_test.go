package deadline

import (
	"testing"
	"time"
	"unsafe"
)

type item struct {
	e    Entry // first, so that an *Entry converts back to its *item
	name string
}

func newItem(name string) *item { return &item{name: name} }

func itemOf(e *Entry) *item { return (*item)(unsafe.Pointer(e)) }

func popAll(l *List, now int64) []string {
	var out []string
	for e := l.PopExpired(now); e != nil; e = l.PopExpired(now) {
		out = append(out, itemOf(e).name)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEmptyListHasNoDeadline(t *testing.T) {
	var l List
	l.Init(time.Second)
	if _, ok := l.Next(); ok {
		t.Fatal("empty list reports a deadline")
	}
	if e := l.PopExpired(1 << 62); e != nil {
		t.Fatal("empty list popped an entry")
	}
}

func TestTouchOrdersByDeadlineAndHeadGivesNext(t *testing.T) {
	var l List
	l.Init(10)
	a, b, c := newItem("a"), newItem("b"), newItem("c")
	l.Touch(&a.e, 0) // due 10
	l.Touch(&b.e, 2) // due 12
	l.Touch(&c.e, 5) // due 15
	if at, ok := l.Next(); !ok || at != 10 {
		t.Fatalf("Next = %d, %v; want 10", at, ok)
	}
	// Touching a moves it behind c.
	l.Touch(&a.e, 7) // due 17
	if at, _ := l.Next(); at != 12 {
		t.Fatalf("after touching the head, Next = %d, want 12", at)
	}
	if got := popAll(&l, 11); len(got) != 0 {
		t.Fatalf("popped %v before any deadline", got)
	}
	if got := popAll(&l, 15); !equal(got, []string{"b", "c"}) {
		t.Fatalf("popped %v at 15, want [b c]", got)
	}
	if got := popAll(&l, 100); !equal(got, []string{"a"}) {
		t.Fatalf("popped %v at 100, want [a]", got)
	}
	if a.e.Linked() || b.e.Linked() || c.e.Linked() {
		t.Fatal("popped entries still linked")
	}
}

func TestRemoveAnywhere(t *testing.T) {
	var l List
	l.Init(10)
	items := []*item{newItem("a"), newItem("b"), newItem("c"), newItem("d")}
	for i, it := range items {
		l.Touch(&it.e, int64(i))
	}
	items[1].e.Remove() // middle
	items[3].e.Remove() // tail
	items[0].e.Remove() // head
	items[0].e.Remove() // twice: no effect
	if got := popAll(&l, 100); !equal(got, []string{"c"}) {
		t.Fatalf("popped %v, want [c]", got)
	}
	// The list is usable after removing everything.
	l.Touch(&items[1].e, 200)
	if got := popAll(&l, 210); !equal(got, []string{"b"}) {
		t.Fatalf("popped %v, want [b]", got)
	}
}

func TestTouchMovesBetweenLists(t *testing.T) {
	var idle, write List
	idle.Init(100)
	write.Init(10)
	a, b := newItem("a"), newItem("b")
	idle.Touch(&a.e, 0)
	idle.Touch(&b.e, 0)
	write.Touch(&a.e, 1) // a leaves idle for write
	if got := popAll(&idle, 1000); !equal(got, []string{"b"}) {
		t.Fatalf("idle popped %v, want [b]", got)
	}
	if got := popAll(&write, 11); !equal(got, []string{"a"}) {
		t.Fatalf("write popped %v, want [a]", got)
	}
}

func TestDuration(t *testing.T) {
	var l List
	l.Init(3 * time.Second)
	if l.Duration() != 3*time.Second {
		t.Fatalf("Duration = %v", l.Duration())
	}
	it := newItem("x")
	l.Touch(&it.e, 5)
	if it.e.Deadline() != 5+int64(3*time.Second) {
		t.Fatalf("Deadline = %d", it.e.Deadline())
	}
}

func BenchmarkTouch(b *testing.B) {
	var l List
	l.Init(time.Second)
	items := make([]*item, 1024)
	for i := range items {
		items[i] = newItem("")
		l.Touch(&items[i].e, 0)
	}
	b.ReportAllocs()
	now := int64(0)
	i := 0
	for b.Loop() {
		now++
		l.Touch(&items[i&1023].e, now)
		i++
	}
}

func BenchmarkPopExpired(b *testing.B) {
	var l List
	l.Init(1)
	it := newItem("")
	b.ReportAllocs()
	now := int64(0)
	for b.Loop() {
		l.Touch(&it.e, now)
		now += 2
		if l.PopExpired(now) == nil {
			b.Fatal("nothing expired")
		}
	}
}
