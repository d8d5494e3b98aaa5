//go:build race

package frameloop_test

// The race detector allocates, and makes sync.Pool drop items on purpose:
// allocation counts are measured without it.
const raceEnabled = true
