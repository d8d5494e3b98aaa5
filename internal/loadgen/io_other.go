//go:build unix && !linux

package loadgen

import "golang.org/x/sys/unix"

// Elsewhere system calls may go through libc, so reads and writes are
// x/sys's ordinary ones.

func readFd(fd int, p []byte) (int, error)  { return unix.Read(fd, p) }
func writeFd(fd int, p []byte) (int, error) { return unix.Write(fd, p) }
