//go:build unix && !linux

package sock

func isPlatformConnectionError(error) bool { return false }
