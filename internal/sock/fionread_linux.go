package sock

import "golang.org/x/sys/unix"

const (
	fionread = unix.TIOCINQ  // SIOCINQ for sockets: bytes not yet read
	siocoutq = unix.TIOCOUTQ // SIOCOUTQ for sockets: bytes not yet acknowledged
)
