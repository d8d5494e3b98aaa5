//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package sock

// fionread is FIONREAD, _IOR('f', 127, int) on every BSD; x/sys does not
// export it there.
const fionread = 0x4004667f
