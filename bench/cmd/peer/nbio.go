package main

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	llibtls "github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/mempool"
)

// nbioBatchCap bounds the buffers a connection keeps between events; frames
// at least this large are written straight from the input.
const nbioBatchCap = 64 << 10

// nbioConn is a connection's session: the bytes of an incomplete frame
// carried over to the next OnData, and a reusable reply batch. It is
// created on first data, so idle connections cost nothing beyond nbio's own.
type nbioConn struct {
	in  []byte
	out []byte
}

// nbioTLSConn is a TLS connection's session, made at open: the fork's
// tls.Conn (non-blocking: it is fed with Append and read on the poller) and
// the frame state. The reply batch is borrowed per event (nbioTLSBufs)
// instead of kept, since tls.Conn.Write copies it into records.
type nbioTLSConn struct {
	tc *llibtls.Conn
	st nbioConn
}

// nbioTLSBufs holds the plaintext and reply buffers of one TLS OnData.
var nbioTLSBufs = sync.Pool{New: func() any { return &[2][]byte{make([]byte, 0, nbioBatchCap), make([]byte, 0, nbioBatchCap)} }}

// echo decodes every complete frame of data (after the carried-over tail),
// batches the replies in st.out (or out, if st.out is nil) and writes each
// batch with one call of write; a frame of nbioBatchCap bytes or more is
// written straight from the input. It reports whether the connection must
// be closed (an oversized header) and a write error.
func (st *nbioConn) echo(data, out []byte, maxMessage int, write func([]byte) (int, error)) (closeConn bool, err error) {
	buf := data
	if len(st.in) > 0 {
		st.in = append(st.in, data...)
		buf = st.in
	}
	keep := out == nil
	if keep {
		out = st.out[:0]
	}
	for len(buf) >= 4 {
		n := int(binary.LittleEndian.Uint32(buf))
		if n > maxMessage {
			closeConn = true
			break
		}
		total := 4 + n
		if len(buf) < total {
			break
		}
		if total >= nbioBatchCap {
			if len(out) > 0 {
				if _, err := write(out); err != nil {
					return false, err
				}
				out = out[:0]
			}
			if _, err := write(buf[:total]); err != nil {
				return false, err
			}
		} else {
			out = append(out, buf[:total]...)
		}
		buf = buf[total:]
	}
	if len(out) > 0 {
		if _, err := write(out); err != nil {
			return false, err
		}
	}
	if closeConn {
		return true, nil
	}
	if keep {
		if cap(out) > nbioBatchCap {
			out = nil
		}
		st.out = out[:0]
	}
	// Keep the incomplete tail (if any) for the next OnData.
	switch {
	case len(buf) == 0:
		if cap(st.in) > nbioBatchCap {
			st.in = nil
		} else {
			st.in = st.in[:0]
		}
	case len(st.in) > 0:
		// buf is a suffix of st.in: compact in place.
		st.in = st.in[:copy(st.in, buf)]
	default:
		// buf is part of a buffer only valid during OnData.
		st.in = append(st.in[:0], buf...)
	}
	return false, nil
}

// serveNbio runs an nbio engine whose OnData decodes every complete frame of
// the input (carrying a partial frame over in the session), batches the
// replies of one read and writes them with a single Conn.Write (which writes
// to the socket at once and copies only what the kernel does not take).
//
// With TLS, OnOpen makes the fork's non-blocking tls.Conn over the nbio.Conn
// (as the extension's WrapOpen does, with nbio's default memory pool);
// OnData appends the ciphertext, reads every plaintext byte now available
// (the handshake runs inside these reads, on the poller), echoes the frames
// and writes the read's replies with one tls.Conn.Write.
func serveNbio(ctx context.Context, cfg config) error {
	logging.SetLevel(logging.LevelError)
	eng := nbio.NewEngine(nbio.Config{
		Network: "tcp",
		Addrs:   []string{cfg.addr},
		NPoller: cfg.loops,
	})
	maxMessage := cfg.maxMessage
	if cfg.tlsCert != "" {
		cert, err := llibtls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return err
		}
		tlsCfg := &llibtls.Config{Certificates: []llibtls.Certificate{cert}, MinVersion: llibtls.VersionTLS13}
		eng.OnOpen(func(c *nbio.Conn) {
			c.SetSession(&nbioTLSConn{tc: llibtls.NewConn(c, tlsCfg, false, true, mempool.DefaultMemPool)})
		})
		eng.OnClose(func(c *nbio.Conn, _ error) {
			if s, ok := c.Session().(*nbioTLSConn); ok {
				_ = s.tc.Close() // releases its buffers to the pool
			}
		})
		eng.OnData(func(c *nbio.Conn, data []byte) {
			s, ok := c.Session().(*nbioTLSConn)
			if !ok {
				_ = c.Close()
				return
			}
			_, _ = s.tc.Append(data)
			bufs := nbioTLSBufs.Get().(*[2][]byte)
			defer nbioTLSBufs.Put(bufs)
			plain := bufs[0][:0]
			for {
				if len(plain) == cap(plain) {
					plain = append(plain, 0)[:len(plain)]
				}
				n, err := s.tc.Read(plain[len(plain):cap(plain)])
				if err != nil {
					_ = c.Close()
					return
				}
				if n == 0 {
					break
				}
				plain = plain[:len(plain)+n]
			}
			if cap(plain) <= nbioBatchCap {
				bufs[0] = plain[:0]
			}
			if len(plain) == 0 {
				return
			}
			closeConn, err := s.st.echo(plain, bufs[1][:0], maxMessage, s.tc.Write)
			if err != nil || closeConn {
				_ = c.Close()
			}
		})
	} else {
		eng.OnData(func(c *nbio.Conn, data []byte) {
			st, _ := c.Session().(*nbioConn)
			if st == nil {
				st = &nbioConn{}
				c.SetSession(st)
			}
			closeConn, err := st.echo(data, nil, maxMessage, c.Write)
			if err != nil {
				return
			}
			if closeConn {
				_ = c.Close()
			}
		})
	}

	if err := eng.Start(); err != nil {
		return err
	}
	if cfg.ready != nil {
		cfg.ready(eng.Addrs[0])
	}
	<-ctx.Done()
	done := make(chan struct{})
	go func() {
		eng.Stop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("nbio engine did not stop within 10s")
	}
}
