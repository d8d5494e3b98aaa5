package tlslayer

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

func dialTLS(tb testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	tb.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return c, nil
}

func roundTrip(tb testing.TB, c *tls.Conn, msg string) {
	tb.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		tb.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		tb.Fatal(err)
	}
	if string(got) != msg {
		tb.Fatalf("echo %q, want %q", got, msg)
	}
}

// Go's crypto/tls client, both versions: ALPN, a client certificate
// required and verified, resumption with tickets.
func TestGoClient(t *testing.T) {
	p := getPKI(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			ts := startLoopServer(t, p.ServerConfig(true), Options{}, 0)
			cc := p.ClientConfig(v.v)
			cc.Certificates = []tls.Certificate{p.Client}
			cc.ClientSessionCache = tls.NewLRUClientSessionCache(8)

			for i, wantResume := range []bool{false, true} {
				c, err := dialTLS(t, ts.addr(), cc)
				if err != nil {
					t.Fatal(err)
				}
				roundTrip(t, c, "hello from a Go client\n")
				cs := c.ConnectionState()
				if cs.Version != v.v || cs.NegotiatedProtocol != "x-frameloop" || cs.DidResume != wantResume {
					t.Fatalf("conn %d: client sees version %x alpn %q resumed %v", i, cs.Version, cs.NegotiatedProtocol, cs.DidResume)
				}
				c.Close()
				r := ts.result(t)
				st := r.state
				if st.Version != v.v || st.NegotiatedProtocol != "x-frameloop" || st.DidResume != wantResume {
					t.Fatalf("conn %d: server sees version %x alpn %q resumed %v", i, st.Version, st.NegotiatedProtocol, st.DidResume)
				}
				if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != p.ClientName {
					t.Fatalf("conn %d: server sees peer certificates %v", i, st.PeerCertificates)
				}
				if !wantResume && len(st.VerifiedChains) == 0 {
					t.Fatalf("conn %d: no verified chain", i)
				}
				// The client closed with close_notify: a clean EOF.
				wantReason(t, r.err, ReasonEOF)
			}
		})
	}
}

// A client certificate nobody trusts, and none at all.
func TestGoClientCertificateRefused(t *testing.T) {
	p := getPKI(t)
	for _, v := range versions {
		for _, tc := range []struct {
			name   string
			certs  []tls.Certificate
			detail string
		}{
			{"self-signed", []tls.Certificate{p.Rogue}, "certificate signed by unknown authority"},
			{"none", nil, "didn't provide a certificate"},
		} {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				ts := startLoopServer(t, p.ServerConfig(true), Options{}, 0)
				cc := p.ClientConfig(v.v)
				// Go's client sends only a certificate the server's
				// certificate_authorities list admits; force the choice.
				cc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if len(tc.certs) == 0 {
						return &tls.Certificate{}, nil
					}
					return &tc.certs[0], nil
				}
				c, err := dialTLS(t, ts.addr(), cc)
				if err == nil {
					// TLS 1.3: the client is done after its last flight;
					// it learns of the refusal on its first read.
					c.Write([]byte("x"))
					_, err = c.Read(make([]byte, 1))
					c.Close()
				}
				if err == nil || !strings.Contains(err.Error(), "remote error") {
					t.Fatalf("client: %v", err)
				}
				r := ts.result(t)
				t.Logf("client: %v", err)
				t.Logf("server: %v", r.err)
				wantReason(t, r.err, ReasonBadCertificate)
				if !strings.Contains(r.err.Error(), tc.detail) {
					t.Fatalf("server error %q lacks %q", r.err, tc.detail)
				}
				if tc.name == "self-signed" {
					if _, ok := errors.AsType[x509.UnknownAuthorityError](r.err); !ok {
						t.Fatalf("%v does not wrap x509.UnknownAuthorityError", r.err)
					}
				}
			})
		}
	}
}

// 32 MiB echoed byte-exact, written in small pieces and in pieces over
// 16 KiB (so over the TLS record size), while the client reads
// concurrently.
func TestGoClientBulkEcho(t *testing.T) {
	p := getPKI(t)
	const total = 32 << 20
	data := make([]byte, total)
	rand.NewChaCha8([32]byte{7}).Read(data)

	for _, v := range versions {
		for _, w := range []struct {
			name     string
			min, max int
		}{{"small", 1, 1500}, {"16KiB+", 16385, 70000}} {
			t.Run(v.name+"/"+w.name, func(t *testing.T) {
				if testing.Short() && w.name == "small" {
					t.Skip("short")
				}
				ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
				c, err := dialTLS(t, ts.addr(), p.ClientConfig(v.v))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				werr := make(chan error, 1)
				go func() {
					sizes := rand.New(rand.NewPCG(uint64(w.min), 1))
					for off := 0; off < total; {
						n := min(w.min+sizes.IntN(w.max-w.min+1), total-off)
						if _, err := c.Write(data[off : off+n]); err != nil {
							werr <- err
							return
						}
						off += n
					}
					werr <- c.CloseWrite()
				}()
				got := make([]byte, total+1)
				n, err := io.ReadFull(c, got)
				if err != io.ErrUnexpectedEOF || n != total {
					t.Fatalf("read %d bytes: %v", n, err)
				}
				if !bytes.Equal(got[:total], data) {
					t.Fatal("echo differs")
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				r := ts.result(t)
				wantReason(t, r.err, ReasonEOF)
				if r.echoed != total {
					t.Fatalf("server echoed %d", r.echoed)
				}
				// The client writes right behind its Finished: the loop may
				// feed a lot before it learns the handshake is over.
				t.Logf("during the handshake the loop paused reading %d time(s); the session held at most %d bytes", r.pauses, r.maxBuffered)
			})
		}
	}
}

// Many clients at once, mixed versions, each echoing 256 KiB: the
// handshake goroutines and the per-connection loops run concurrently
// (which is what the race detector needs to see).
func TestGoClientConcurrent(t *testing.T) {
	p := getPKI(t)
	ts := startLoopServer(t, p.ServerConfig(false), Options{}, 0)
	const clients, size = 32, 256 << 10
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{3}).Read(data)
	errc := make(chan error, clients)
	for i := range clients {
		go func() {
			errc <- func() error {
				c, err := dialTLS(t, ts.addr(), p.ClientConfig(versions[i%2].v))
				if err != nil {
					return err
				}
				defer c.Close()
				go func() {
					c.Write(data)
					c.CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, data) {
					return errors.New("echo differs")
				}
				return nil
			}()
		}()
	}
	for range clients {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	for range clients {
		if r := ts.result(t); ReasonOf(r.err) != ReasonEOF || r.echoed != size {
			t.Errorf("server: %v, echoed %d", r.err, r.echoed)
		}
	}
}
