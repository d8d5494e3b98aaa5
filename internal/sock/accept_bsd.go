//go:build dragonfly || freebsd

package sock

import "golang.org/x/sys/unix"

func accept(lfd int) (int, unix.Sockaddr, error) {
	return unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
}
