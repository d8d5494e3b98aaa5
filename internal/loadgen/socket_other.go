//go:build unix && !linux

package loadgen

func bindNoPort(int) {}
