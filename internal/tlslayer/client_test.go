package tlslayer

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// A client Session, driven as a load generator on raw sockets would drive
// it — handshake on a goroutine, then Encrypt and Decrypt on one — talks
// to crypto/tls's own server: TLS 1.2 and 1.3, byte-exact both ways.
func TestClientSessionAgainstCryptoTLSServer(t *testing.T) {
	p := getPKI(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", p.ServerConfig(false))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				io.Copy(c, c) // echo
			}()
			raw, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			s := NewClient(p.ClientConfig(v.v), Options{Notify: func() {}})
			defer s.Close()

			// The handshake: its own goroutine; here a pump feeds it and
			// writes its output until it ends.
			hs := make(chan error, 1)
			go func() { hs <- s.Handshake(context.Background()) }()
			buf := make([]byte, 64<<10)
		handshake:
			for {
				if out := s.TakeOutput(nil); len(out) > 0 {
					if _, err := raw.Write(out); err != nil {
						t.Fatal(err)
					}
				}
				select {
				case err := <-hs:
					if err != nil {
						t.Fatalf("handshake: %v", err)
					}
					if out := s.TakeOutput(nil); len(out) > 0 {
						raw.Write(out)
					}
					break handshake
				default:
				}
				raw.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
				n, err := raw.Read(buf)
				if n > 0 {
					if _, err := s.Feed(buf[:n]); err != nil {
						t.Fatal(err)
					}
				}
				if err != nil && !isTimeoutErr(err) {
					t.Fatalf("during the handshake: %v", err)
				}
			}
			if st := s.State(); st.Version != v.v {
				t.Fatalf("negotiated %x, want %x", st.Version, v.v)
			}
			raw.SetReadDeadline(time.Now().Add(10 * time.Second))

			// Established: Encrypt, write; read, Decrypt.
			msg := bytes.Repeat([]byte("frameloop client session "), 4000)
			out, err := s.Encrypt(nil, msg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Write(out); err != nil {
				t.Fatal(err)
			}
			var got []byte
			plain := make([]byte, 16<<10)
			var pending []byte // the bytes just read, if Decrypt has not taken them
			for len(got) < len(msg) {
				if pending == nil {
					n, err := raw.Read(buf)
					if err != nil {
						t.Fatalf("after %d bytes: %v", len(got), err)
					}
					pending = buf[:n]
				}
				n, more, err := s.Decrypt(pending, plain)
				pending = nil
				got = append(got, plain[:n]...)
				if err != nil {
					t.Fatal(err)
				}
				for more {
					n, more, err = s.Decrypt(nil, plain)
					got = append(got, plain[:n]...)
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			if !bytes.Equal(got, msg) {
				t.Fatal("the echo differs")
			}
		})
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
