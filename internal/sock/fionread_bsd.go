//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package sock

const (
	// fionread is FIONREAD, _IOR('f', 127, int) on every BSD; x/sys does
	// not export it there.
	fionread = 0x4004667f
	// siocoutq: not every BSD can tell unacknowledged bytes the same way;
	// 0 makes Unsent report "unknown", and callers take the careful path.
	siocoutq = 0
)
