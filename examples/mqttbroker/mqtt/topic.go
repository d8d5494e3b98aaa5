package mqtt

import (
	"bytes"
	"slices"
	"strings"
)

// Index maps topic filters to subscribers, identified by K (4.7): a trie with
// a node per topic level, "+" and "#" being levels like others. It is not
// safe for concurrent use. The zero value is an empty index.
type Index[K comparable] struct {
	root  node[K]
	owned map[K][]string // each subscriber's filters, for RemoveAll: few each, a slice is smaller than a map
	hits  map[K]byte     // Match's scratch, kept between calls
}

type node[K comparable] struct {
	parent *node[K]
	level  string
	kids   map[string]*node[K]
	subs   map[K]byte // the subscribers whose filter ends here, with their QoS; nil for none
}

// Subscribe subscribes key to filter, a valid topic filter (as Decode
// checks), at QoS qos, replacing its subscription to the same filter
// [MQTT-3.8.4-3].
func (x *Index[K]) Subscribe(filter string, key K, qos byte) {
	n := x.find(filter, true)
	if n.subs == nil {
		n.subs = make(map[K]byte, 1)
	}
	n.subs[key] = qos
	if x.owned == nil {
		x.owned = make(map[K][]string)
	}
	if !slices.Contains(x.owned[key], filter) {
		x.owned[key] = append(x.owned[key], filter)
	}
}

// Unsubscribe removes key's subscription to filter (the same characters,
// 3.10.3) and reports whether there was one.
func (x *Index[K]) Unsubscribe(filter string, key K) bool {
	i := slices.Index(x.owned[key], filter)
	if i < 0 {
		return false
	}
	if rest := slices.Delete(x.owned[key], i, i+1); len(rest) > 0 {
		x.owned[key] = rest
	} else {
		delete(x.owned, key)
	}
	n := x.find(filter, false)
	for delete(n.subs, key); n.parent != nil && len(n.subs) == 0 && len(n.kids) == 0; n = n.parent {
		delete(n.parent.kids, n.level) // prune the emptied branch
	}
	return true
}

// RemoveAll removes all of key's subscriptions, as when its session ends (3.1.2.4).
func (x *Index[K]) RemoveAll(key K) {
	for _, filter := range slices.Clone(x.owned[key]) {
		x.Unsubscribe(filter, key)
	}
}

// Match calls fn once for each subscriber with a filter matching topic, a
// valid topic name, passing the highest QoS of those filters (3.3.5), in no
// particular order. fn must not modify the index. Match allocates nothing
// once its scratch map has grown to the largest match; the scratch map makes
// it a writer: MatchInto is the variant for readers sharing the index.
func (x *Index[K]) Match(topic []byte, fn func(key K, qos byte)) {
	if x.hits == nil {
		x.hits = make(map[K]byte)
	}
	x.MatchInto(topic, x.hits)
	for k, q := range x.hits {
		fn(k, q)
	}
	clear(x.hits)
}

// MatchInto adds to hits each subscriber with a filter matching topic, a
// valid topic name, with the highest QoS of those filters (3.3.5). It only
// reads the index, so calls may run concurrently (under a read lock), each
// with a map of its own.
func (x *Index[K]) MatchInto(topic []byte, hits map[K]byte) {
	// Filters starting with a wildcard don't match topic names starting with '$' (4.7.2).
	matchLevels(&x.root, topic, false, len(topic) > 0 && topic[0] == '$', hits)
}

// matchLevels collects into hits the subscribers below n whose filters match
// rest, the topic levels left after n's; end says no level is left, noWild
// that wildcards may not match the next one.
func matchLevels[K comparable](n *node[K], rest []byte, end, noWild bool, hits map[K]byte) {
	if c := n.kids["#"]; c != nil && !noWild {
		collect(c, hits) // '#' matches the parent level and any number below (4.7.1.2)
	}
	if end {
		collect(n, hits)
		return
	}
	level, next, found := bytes.Cut(rest, []byte{'/'})
	if c := n.kids[string(level)]; c != nil {
		matchLevels(c, next, !found, false, hits)
	}
	if c := n.kids["+"]; c != nil && !noWild {
		matchLevels(c, next, !found, false, hits) // '+' matches one level, maybe empty (4.7.1.3)
	}
}

func collect[K comparable](n *node[K], hits map[K]byte) {
	for k, q := range n.subs {
		if old, ok := hits[k]; !ok || q > old {
			hits[k] = q
		}
	}
}

// find returns filter's node, or nil; create adds the missing nodes. The
// levels of a filter are what its '/' separate (4.7.1.1): "a/" has two.
func (x *Index[K]) find(filter string, create bool) *node[K] {
	n := &x.root
	for rest, more := filter, true; more && n != nil; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		if n.kids[level] == nil && create {
			if n.kids == nil {
				n.kids = make(map[string]*node[K])
			}
			n.kids[level] = &node[K]{parent: n, level: level}
		}
		n = n.kids[level]
	}
	return n
}
