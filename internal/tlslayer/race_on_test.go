//go:build race

package tlslayer

// The race detector allocates and slows everything down: allocation counts
// and memory figures are measured without it.
const raceEnabled = true
