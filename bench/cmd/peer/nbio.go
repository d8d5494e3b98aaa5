package main

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
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

// serveNbio runs an nbio engine whose OnData decodes every complete frame of
// the input (carrying a partial frame over in the session), batches the
// replies of one read and writes them with a single Conn.Write (which writes
// to the socket at once and copies only what the kernel does not take).
func serveNbio(ctx context.Context, cfg config) error {
	logging.SetLevel(logging.LevelError)
	eng := nbio.NewEngine(nbio.Config{
		Network: "tcp",
		Addrs:   []string{cfg.addr},
		NPoller: cfg.loops,
	})
	maxMessage := cfg.maxMessage
	eng.OnData(func(c *nbio.Conn, data []byte) {
		st, _ := c.Session().(*nbioConn)
		if st == nil {
			st = &nbioConn{}
			c.SetSession(st)
		}
		buf := data
		if len(st.in) > 0 {
			st.in = append(st.in, data...)
			buf = st.in
		}
		out := st.out[:0]
		closeConn := false
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
					if _, err := c.Write(out); err != nil {
						return
					}
					out = out[:0]
				}
				if _, err := c.Write(buf[:total]); err != nil {
					return
				}
			} else {
				out = append(out, buf[:total]...)
			}
			buf = buf[total:]
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
		if closeConn {
			_ = c.Close()
			return
		}
		if cap(out) > nbioBatchCap {
			out = nil
		}
		st.out = out[:0]
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
			// buf is part of nbio's read buffer, only valid during OnData.
			st.in = append(st.in[:0], buf...)
		}
	})

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
