//go:build !race

package tlslayer

const raceEnabled = false
