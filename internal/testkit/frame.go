package testkit

// The default framing: a 4-byte little-endian length, then that many
// payload bytes. Everything that knows the header's layout is in this
// file (Header, AppendFrame and ReadFrameInto), so that another framing
// can be added beside it with its own encoder and reader.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// HeaderSize is the size of the default framing's length prefix.
const HeaderSize = 4

// MaxFrame is a sanity bound for ReadFrame's callers that expect no
// particular size: a length past it means the stream is out of step (or
// the peer is not speaking the frame format), not a frame to allocate.
const MaxFrame = 64 << 20

// Header is a bare length prefix announcing n payload bytes.
func Header(n uint32) []byte {
	return binary.LittleEndian.AppendUint32(make([]byte, 0, HeaderSize), n)
}

// AppendFrame appends payload, as one frame, to dst.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// Frame encodes payload as one frame.
func Frame(payload []byte) []byte {
	return AppendFrame(make([]byte, 0, HeaderSize+len(payload)), payload)
}

// WriteAll writes b to w within timeout. w must have a write deadline (a
// net.Conn has) unless timeout is 0, which keeps the deadline already set.
func WriteAll(w io.Writer, b []byte, timeout time.Duration) error {
	if err := setWriteDeadline(w, timeout); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// WriteFrame writes payload as one frame to w within timeout (see
// WriteAll).
func WriteFrame(w io.Writer, payload []byte, timeout time.Duration) error {
	return WriteAll(w, Frame(payload), timeout)
}

// ReadFrame reads one frame from r within timeout (0: the deadline already
// set on r; r needs a read deadline otherwise) and returns its payload. A
// header announcing more than max bytes is an error, not an allocation.
// An error reading the header is returned as it is (io.EOF for a stream
// that ended between frames).
func ReadFrame(r io.Reader, timeout time.Duration, max uint32) ([]byte, error) {
	return ReadFrameInto(r, nil, timeout, max)
}

// ReadFrameInto is ReadFrame reading the payload into buf's storage when
// it is large enough, for callers that read many frames and keep none.
func ReadFrameInto(r io.Reader, buf []byte, timeout time.Duration, max uint32) ([]byte, error) {
	if err := setReadDeadline(r, timeout); err != nil {
		return nil, err
	}
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[:])
	if n > max {
		return nil, fmt.Errorf("frame header announces %d bytes, more than %d: stream out of step", n, max)
	}
	if uint64(n) > uint64(cap(buf)) {
		buf = make([]byte, n)
	}
	p := buf[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, fmt.Errorf("reading a %d-byte payload: %w", n, err)
	}
	return p, nil
}

// ExpectFrameErr reads one frame from c within timeout and checks that it
// carries want.
func ExpectFrameErr(c net.Conn, want []byte, timeout time.Duration) error {
	got, err := ReadFrame(c, timeout, MaxFrame)
	if err != nil {
		return fmt.Errorf("reading the reply to a %d-byte frame: %w", len(want), err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("reply differs: got %d bytes %s, want %d bytes %s", len(got), Preview(got), len(want), Preview(want))
	}
	return nil
}

// ExpectFrame is ExpectFrameErr failing t.
func ExpectFrame(t testing.TB, c net.Conn, want []byte, timeout time.Duration) {
	t.Helper()
	if err := ExpectFrameErr(c, want, timeout); err != nil {
		t.Fatal(err)
	}
}

// EchoErr sends payload as one frame and checks that the identical frame
// comes back, each way within timeout.
func EchoErr(c net.Conn, payload []byte, timeout time.Duration) error {
	if err := WriteFrame(c, payload, timeout); err != nil {
		return fmt.Errorf("writing a %d-byte frame: %w", len(payload), err)
	}
	return ExpectFrameErr(c, payload, timeout)
}

// Echo is EchoErr failing t.
func Echo(t testing.TB, c net.Conn, payload []byte, timeout time.Duration) {
	t.Helper()
	if err := EchoErr(c, payload, timeout); err != nil {
		t.Fatal(err)
	}
}

// setReadDeadline sets r's read deadline to timeout from now; a timeout
// of 0 leaves the deadline as it is.
func setReadDeadline(r any, timeout time.Duration) error {
	if timeout == 0 {
		return nil
	}
	d, ok := r.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		return fmt.Errorf("testkit: a read timeout of %v for a %T, which has no read deadline", timeout, r)
	}
	return d.SetReadDeadline(time.Now().Add(timeout))
}

// setWriteDeadline is setReadDeadline for writes.
func setWriteDeadline(w any, timeout time.Duration) error {
	if timeout == 0 {
		return nil
	}
	d, ok := w.(interface{ SetWriteDeadline(time.Time) error })
	if !ok {
		return fmt.Errorf("testkit: a write timeout of %v for a %T, which has no write deadline", timeout, w)
	}
	return d.SetWriteDeadline(time.Now().Add(timeout))
}
