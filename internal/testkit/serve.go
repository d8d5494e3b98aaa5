package testkit

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// Server is what the tests need of a frameloop.Server (testkit cannot
// import the root package: the root's own tests import testkit).
type Server interface {
	Listen() error
	Serve() error
	Shutdown(context.Context) error
	Addr() net.Addr
}

// Serve binds srv, serves it on a goroutine, and returns its address. When
// the test ends it shuts srv down (within timeout) and checks that Serve
// returned closed, the error a shut-down server returns
// (frameloop.ErrServerClosed); then it runs after, if not nil.
func Serve(tb testing.TB, srv Server, closed error, timeout time.Duration, after func()) string {
	tb.Helper()
	if err := srv.Listen(); err != nil {
		tb.Fatalf("Listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case err := <-done:
			if !errors.Is(err, closed) {
				tb.Errorf("Serve returned %v, want %v", err, closed)
			}
		case <-time.After(timeout + 5*time.Second):
			tb.Errorf("Serve did not return %v after Shutdown", timeout+5*time.Second)
		}
		if after != nil {
			after()
		}
	})
	return srv.Addr().String()
}
