package mqtt

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: Decode never panics, fails only with its errors, leaves its
// input alone, and what it decodes re-encodes to the very bytes it came
// from (with the package's encoders for PUBLISH and PUBACK, with the test's
// for the other client packets), which decode to the same packet.
// testdata/fuzz/FuzzDecode holds the packets the mosquitto clients sent in
// the tests of mosquitto_test.go.
func FuzzDecode(f *testing.F) {
	for _, tc := range append(decodeValid, decodeMalformed...) {
		f.Add(tc.first, tc.body)
	}
	f.Fuzz(func(t *testing.T, first byte, body []byte) {
		in := bytes.Clone(body)
		p, err := Decode(first, body)
		if !bytes.Equal(in, body) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			if err != ErrVersion && err != ErrClientID && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		f2, b2 := encodeClient(p)
		if f2 != first || !bytes.Equal(b2, body) {
			t.Fatalf("%s re-encoded to %#x %q, from %#x %q", show(p), f2, b2, first, body)
		}
		if p.Type == TypePublish { // the complete packet frames the same bytes
			if f3, b3, rest := split(t, AppendPublish(nil, p.Publish)); f3 != first || !bytes.Equal(b3, body) || len(rest) != 0 {
				t.Fatalf("AppendPublish: %#x %q", f3, b3)
			}
		}
		p2, err := Decode(f2, b2)
		if err != nil || show(p2) != show(p) {
			t.Fatalf("decoded %s, then %s, %v", show(p), show(p2), err)
		}
	})
}

// refValidFilter and refValidTopic restate 4.7.1 and 4.7.3 level by level.
func refValidFilter(s string) bool {
	if s == "" || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return false
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) || strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

func refValidTopic(s string) bool { return refValidFilter(s) && !strings.ContainsAny(s, "+#") }

// FuzzTopicMatch checks validFilter, validTopic and the Index against the
// reference: subscriber A holds f1 at QoS 0 and f2 at QoS 1, B holds f2 at
// QoS 2; then A unsubscribes f2; then both go, leaving an empty trie.
func FuzzTopicMatch(f *testing.F) {
	for _, tc := range specMatches {
		f.Add(tc.filter, "sport/#", tc.topic)
		f.Add("#", tc.filter, tc.topic)
	}
	f.Add("a/+/c", "a/b/#", "a/b/c")
	f.Add("+/+", "/+", "/")
	f.Fuzz(func(t *testing.T, f1, f2, topic string) {
		for _, s := range []string{f1, f2, topic} {
			if validFilter([]byte(s)) != refValidFilter(s) || validTopic([]byte(s)) != refValidTopic(s) {
				t.Fatalf("%q: validFilter %t, validTopic %t", s, validFilter([]byte(s)), validTopic([]byte(s)))
			}
		}
		if !refValidFilter(f1) || !refValidFilter(f2) || !refValidTopic(topic) {
			return
		}
		var x Index[string]
		x.Subscribe(f1, "A", 0)
		x.Subscribe(f2, "A", 1)
		x.Subscribe(f2, "B", 2)
		m1, m2 := refMatch(f1, topic), refMatch(f2, topic)
		want := func(a bool, qa byte, b bool) map[string]byte {
			w := map[string]byte{}
			if a {
				w["A"] = qa
			}
			if b {
				w["B"] = 2
			}
			return w
		}
		check := func(step string, want map[string]byte) {
			got := map[string]byte{}
			x.Match([]byte(topic), func(k string, q byte) {
				if _, dup := got[k]; dup {
					t.Fatalf("%s: %s visited twice", step, k)
				}
				got[k] = q
			})
			if !maps.Equal(got, want) {
				t.Fatalf("%s: filters %q %q, topic %q: got %v, want %v", step, f1, f2, topic, got, want)
			}
		}
		qa := byte(0)
		if m2 {
			qa = 1
		}
		check("subscribed", want(m1 || m2, qa, m2))
		if !x.Unsubscribe(f2, "A") {
			t.Fatal("Unsubscribe(f2, A) = false")
		}
		check("A unsubscribed f2", want(m1 && f1 != f2, 0, m2))
		x.RemoveAll("A")
		x.RemoveAll("B")
		check("all removed", want(false, 0, false))
		if len(x.root.kids) != 0 || len(x.owned) != 0 {
			t.Fatalf("empty index keeps %d root levels, %d subscribers", len(x.root.kids), len(x.owned))
		}
	})
}
