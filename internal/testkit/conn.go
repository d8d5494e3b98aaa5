package testkit

// A client's view of a connection: dialing, silence, the end of the
// stream, stalled writes, and the errors that tell them apart.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// IsTimeout says whether err is a deadline set on the connection passing.
func IsTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// IsReset says whether err is the peer resetting the connection (or a
// write to a connection it has reset).
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// IsClosed says whether err is how a client sees a connection its peer
// closed: the end of the stream, or a reset.
func IsClosed(err error) bool { return errors.Is(err, io.EOF) || IsReset(err) }

// Dial connects to addr on network within timeout, failing t otherwise.
// The connection is closed when the test ends.
func Dial(t testing.TB, network, addr string, timeout time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// DialTCP is Dial over TCP, for callers that need the TCP connection's
// own methods (CloseWrite, SetLinger).
func DialTCP(t testing.TB, addr string, timeout time.Duration) *net.TCPConn {
	t.Helper()
	return Dial(t, "tcp", addr, timeout).(*net.TCPConn)
}

// ExpectNothing checks that nothing arrives on c for d and that it stays
// open.
func ExpectNothing(t testing.TB, c net.Conn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	n, err := c.Read(b[:])
	if n > 0 || !IsTimeout(err) {
		t.Fatalf("expected nothing for %v, got %d bytes, err %v", d, n, err)
	}
}

// ReadUntilClosed reads until the connection ends or timeout passes and
// returns what arrived and the error that ended the reading.
func ReadUntilClosed(c net.Conn, timeout time.Duration) ([]byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return got.Bytes(), err
		}
	}
}

// ExpectClosedErr checks that the peer closes c (end of stream or reset)
// within timeout without sending anything more.
func ExpectClosedErr(c net.Conn, timeout time.Duration) error {
	got, err := ReadUntilClosed(c, timeout)
	if len(got) > 0 {
		return fmt.Errorf("expected the connection to close with nothing more, got %d bytes %s (then %v)", len(got), Preview(got), err)
	}
	if !IsClosed(err) {
		return fmt.Errorf("expected the server to close the connection within %v, got %v", timeout, err)
	}
	return nil
}

// ExpectClosed is ExpectClosedErr failing t.
func ExpectClosed(t testing.TB, c net.Conn, timeout time.Duration) {
	t.Helper()
	if err := ExpectClosedErr(c, timeout); err != nil {
		t.Fatal(err)
	}
}

// WaitClosed waits up to timeout for the peer to close c (end of stream or
// reset), discarding whatever arrives before, and returns when it saw the
// close. Unlike ExpectClosedErr, data before the close is no error.
func WaitClosed(c net.Conn, timeout time.Duration) (time.Time, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return time.Time{}, err
	}
	buf := make([]byte, 64<<10)
	for {
		_, err := c.Read(buf)
		switch {
		case err == nil:
			continue
		case IsClosed(err):
			return time.Now(), nil
		case IsTimeout(err):
			return time.Time{}, fmt.Errorf("connection still open after %v", timeout)
		default:
			return time.Time{}, fmt.Errorf("waiting for the close: %v", err)
		}
	}
}

// WriteUntilStall writes stream to c from offset off without reading, in
// writes of at most chunk bytes (cycling over stream when cycle is set;
// stream must then hold whole frames), until limit bytes are written in
// all or a write does not complete within stall. It returns the bytes
// written in all and whether the writes stalled; an error other than the
// stall ends it too.
func WriteUntilStall(c net.Conn, stream []byte, off, limit int64, cycle bool, chunk int, stall time.Duration) (int64, bool, error) {
	for off < limit {
		pos := off
		if cycle {
			pos %= int64(len(stream))
		}
		end := min(pos+int64(chunk), int64(len(stream)), pos+limit-off)
		if err := c.SetWriteDeadline(time.Now().Add(stall)); err != nil {
			return off, false, err
		}
		n, err := c.Write(stream[pos:end])
		off += int64(n)
		if IsTimeout(err) {
			return off, true, nil
		}
		if err != nil {
			return off, false, err
		}
	}
	return off, false, nil
}
