//go:build unix && !linux

package main

import "net"

const canTellUnsent = false

// unsentBytes cannot be told here.
func unsentBytes(net.Conn) (int, bool) { return 0, false }
