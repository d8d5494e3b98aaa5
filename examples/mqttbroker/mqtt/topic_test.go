package mqtt

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// refMatch is the reference matcher: the rules of 4.7, level by level.
func refMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false // 4.7.2
	}
	var rec func(f, t []string) bool
	rec = func(f, t []string) bool {
		switch {
		case len(f) > 0 && f[0] == "#":
			return true // this level and any below, or none (4.7.1.2)
		case len(f) == 0 || len(t) == 0:
			return len(f) == len(t)
		}
		return (f[0] == "+" || f[0] == t[0]) && rec(f[1:], t[1:])
	}
	return rec(strings.Split(filter, "/"), strings.Split(topic, "/"))
}

// match runs the Index on one filter and one topic.
func match(filter, topic string) bool {
	var x Index[int]
	x.Subscribe(filter, 1, 0)
	found := false
	x.Match([]byte(topic), func(int, byte) { found = true })
	return found
}

// The examples of 4.7.1.2, 4.7.1.3, 4.7.2 and 4.7.3.
var specMatches = []struct {
	filter, topic string
	want          bool
}{
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/tennis/player1/#", "sport/tennis/player2", false},
	{"sport/tennis/player1/#", "sport/tennis", false},
	{"sport/#", "sport", true},
	{"#", "sport", true},
	{"#", "/", true},
	{"#", "a/b/c/d", true},
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+/tennis/#", "sport/tennis/player1", true},
	{"+/tennis/#", "sport/tennis", true},
	{"+/tennis/#", "sport/golf", false},
	{"+", "finance", true},
	{"+/+/+", "a//c", true},
	{"a//c", "a//c", true},
	{"a/c", "a//c", false},
	// 4.7.2: topics beginning with $.
	{"#", "$SYS/monitor/Clients", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"+", "$SYS", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS", true},
	{"a/#", "a/$b", true}, // only the first level is special
	{"a/+", "a/$b", true},
	// 4.7.3: case sensitive, spaces are characters, a leading '/' is a level.
	{"ACCOUNTS", "Accounts", false},
	{"Accounts payable", "Accounts payable", true},
	{"/finance", "finance", false},
	{"finance", "/finance", false},
	{"a/", "a", false},
	{"a", "a/", false},
	{"é/+", "é/ü", true},
}

func TestSpecMatches(t *testing.T) {
	for _, tc := range specMatches {
		if !validFilter([]byte(tc.filter)) || !validTopic([]byte(tc.topic)) {
			t.Fatalf("bad case %q %q", tc.filter, tc.topic)
		}
		if got := match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("filter %q, topic %q: Index says %t, want %t", tc.filter, tc.topic, got, tc.want)
		}
		if got := refMatch(tc.filter, tc.topic); got != tc.want {
			t.Errorf("filter %q, topic %q: refMatch says %t, want %t", tc.filter, tc.topic, got, tc.want)
		}
	}
}

// 4.7.1.2 and 4.7.1.3 on which filters are valid.
func TestValidFilter(t *testing.T) {
	for f, want := range map[string]bool{
		"sport/tennis/#": true, "sport/tennis#": false, "sport/tennis/#/ranking": false,
		"#": true, "/#": true, "#/": false, "a/#/": false,
		"+": true, "+/tennis/#": true, "sport+": false, "sport/+/player1": true,
		"/+": true, "+/": true, "++": false, "+#": false, "/": true, "//": true,
		"": false, "a\x00": false, "\xff": false, "é": true,
	} {
		if got := validFilter([]byte(f)); got != want {
			t.Errorf("validFilter(%q) = %t, want %t", f, got, want)
		}
	}
}

// matches lists "key:qos" for a topic, sorted.
func matches(x *Index[string], topic string) string {
	got := map[string]byte{}
	x.Match([]byte(topic), func(k string, q byte) {
		if _, dup := got[k]; dup {
			panic("subscriber visited twice: " + k)
		}
		got[k] = q
	})
	var s []string
	for _, k := range slices.Sorted(maps.Keys(got)) {
		s = append(s, fmt.Sprintf("%s:%d", k, got[k]))
	}
	return strings.Join(s, " ")
}

func TestIndex(t *testing.T) {
	var x Index[string]
	check := func(topic, want string) {
		t.Helper()
		if got := matches(&x, topic); got != want {
			t.Errorf("Match(%q) = %q, want %q", topic, got, want)
		}
	}
	check("a/b", "")
	x.Subscribe("a/b", "A", 0)
	x.Subscribe("a/+", "A", 1)
	x.Subscribe("#", "A", 0)
	x.Subscribe("a/#", "A", 0)
	x.Subscribe("a/b", "B", 2)
	x.Subscribe("+/b", "C", 1)
	check("a/b", "A:1 B:2 C:1") // A once, at its highest QoS (3.3.5)
	check("a", "A:0")
	check("x/b", "A:0 C:1")
	check("$x/b", "")
	x.Subscribe("#", "D", 1) // '#' is collected before a/b: the max must win, not the last
	x.Subscribe("a/b", "D", 0)
	check("a/b", "A:1 B:2 C:1 D:1")
	x.RemoveAll("D")

	x.Subscribe("a/+", "A", 0) // replaces [MQTT-3.8.4-3]
	check("a/b", "A:0 B:2 C:1")
	x.Subscribe("a/+", "A", 2)
	check("a/b", "A:2 B:2 C:1")

	if !x.Unsubscribe("a/+", "A") || x.Unsubscribe("a/+", "A") {
		t.Error("Unsubscribe a/+ A: want true, then false")
	}
	if x.Unsubscribe("a/b", "C") || x.Unsubscribe("a/c", "A") || x.Unsubscribe("a", "A") || x.Unsubscribe("a/b/c", "B") {
		t.Error("Unsubscribe of a filter not subscribed reported true")
	}
	check("a/b", "A:0 B:2 C:1")

	x.RemoveAll("A")
	check("a/b", "B:2 C:1")
	check("a", "")
	x.RemoveAll("A") // again: nothing
	x.RemoveAll("nobody")
	x.Unsubscribe("a/b", "B")
	x.RemoveAll("C")
	check("a/b", "")
	if len(x.root.kids) != 0 || len(x.owned) != 0 {
		t.Errorf("empty index keeps %d root levels, %d subscribers", len(x.root.kids), len(x.owned))
	}
}

// TestIndexPrunes: unsubscribing removes the nodes nobody needs, and only those.
func TestIndexPrunes(t *testing.T) {
	var x Index[int]
	x.Subscribe("a/b/c/d", 1, 0)
	x.Subscribe("a/b", 2, 0)
	x.Subscribe("a/b/+/d", 3, 0)
	x.Unsubscribe("a/b/c/d", 1)
	b := x.root.kids["a"].kids["b"]
	if b.kids["c"] != nil || b.kids["+"] == nil {
		t.Errorf("a/b's levels after unsubscribing a/b/c/d: %v", slices.Collect(maps.Keys(b.kids)))
	}
	x.Unsubscribe("a/b/+/d", 3)
	if len(b.kids) != 0 || x.root.kids["a"] == nil {
		t.Error("a/b/+/d not pruned, or a/b pruned")
	}
	x.Unsubscribe("a/b", 2)
	if len(x.root.kids) != 0 {
		t.Error("a not pruned")
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	var x Index[int]
	for i := range 1000 {
		x.Subscribe(fmt.Sprintf("dev/%d/temp", i), i, 1)
		x.Subscribe("dev/+/temp", i%50, 0)
		x.Subscribe("dev/#", i%7, 1)
	}
	topic := []byte("dev/42/temp")
	count := 0
	n := testing.AllocsPerRun(1000, func() {
		x.Match(topic, func(int, byte) { count++ })
	})
	if n != 0 {
		t.Errorf("Match: %v allocations", n)
	}
	if count == 0 {
		t.Error("no match")
	}
}

func BenchmarkMatch(b *testing.B) {
	var x Index[int]
	for i := range 10000 {
		x.Subscribe(fmt.Sprintf("dev/%d/temp", i), i, 1)
		x.Subscribe(fmt.Sprintf("dev/%d/#", i%100), i, 0)
	}
	topic := []byte("dev/42/temp")
	b.ReportAllocs()
	for b.Loop() {
		x.Match(topic, func(int, byte) {})
	}
}

// MatchInto only reads: readers sharing the index, each with its own map,
// find what Match finds (go test -race checks that they only read).
func TestMatchIntoConcurrentReaders(t *testing.T) {
	var x Index[int]
	for i, f := range []string{"a/b", "a/+", "a/#", "#", "+/b", "b/c", "$s/x"} {
		x.Subscribe(f, i, byte(i%2))
	}
	topics := []string{"a/b", "a", "b/c", "$s/x", "c/b", "a/b/c"}
	want := map[string]map[int]byte{}
	for _, topic := range topics {
		want[topic] = map[int]byte{}
		x.Match([]byte(topic), func(k int, q byte) { want[topic][k] = q })
	}
	done := make(chan error)
	for range 4 {
		go func() {
			hits := map[int]byte{}
			for range 200 {
				for _, topic := range topics {
					x.MatchInto([]byte(topic), hits)
					if !maps.Equal(hits, want[topic]) {
						done <- fmt.Errorf("%q: MatchInto %v, Match %v", topic, hits, want[topic])
						return
					}
					clear(hits)
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
