//go:build !race

package frameloop_test

const raceEnabled = false
