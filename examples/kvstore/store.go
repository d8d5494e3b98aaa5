package main

import "sync"

// store is the key-value map, shared by the loops and the workers.
type store struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func newStore() *store { return &store{m: make(map[string][]byte)} }

func (s *store) get(key []byte) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[string(key)] // no allocation for the lookup
	return v, ok
}

func (s *store) set(key, value []byte) {
	v := append([]byte(nil), value...)
	s.mu.Lock()
	s.m[string(key)] = v
	s.mu.Unlock()
}

func (s *store) del(key []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[string(key)]
	delete(s.m, string(key))
	return ok
}
