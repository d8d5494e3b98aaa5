package loadgen

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

const (
	// rssSettle lets the server finish allocating for the new connections
	// before its RSS is read.
	rssSettle = time.Second
	// idleStall gives up waiting for the connections when none has been
	// answered or failed for this long (each connect has its own timeout).
	idleStall = connectTimeout + 5*time.Second
	idlePoll  = 10 * time.Millisecond
	// warmupConns connections are opened, echoed and closed before the
	// baseline RSS is read; warmupSettle lets the server close them.
	warmupConns  = 100
	warmupSettle = 500 * time.Millisecond
)

// runIdle opens cfg.Idle connections, echoes one frame on each, holds them
// open for cfg.Hold and closes them, reading the server's RSS before and
// after they open.
func runIdle(cfg *Config, stop <-chan struct{}) (*Result, error) {
	n := cfg.Idle
	idleCfg := *cfg
	idleCfg.Conns, idleCfg.Pipeline, idleCfg.Rate = n, 1, 0
	var rssBefore, rssAfter int64
	var rssErr error
	if cfg.ServerPID > 0 {
		// Warm the server up with a few connections, opened and closed, so
		// that the baseline already holds what a server touches once
		// whatever the number of connections — code paths faulted in, loop
		// buffers, pools — and the growth measures what each connection
		// costs. Every server measured gets the same warm-up.
		warm := *cfg
		warm.Idle, warm.Hold, warm.ServerPID = min(n, warmupConns), 0, 0
		wr, err := runIdle(&warm, stop)
		if err != nil {
			return nil, fmt.Errorf("warm-up: %v", err)
		}
		if wr.Interrupted || !sleepUntilOr(now()+int64(warmupSettle), stop) {
			return interruptedIdle(&idleCfg), nil
		}
		if rssBefore, rssErr = procRSS(cfg.ServerPID); rssErr != nil {
			return nil, fmt.Errorf("server RSS: %v", rssErr)
		}
	}
	ws, err := startWorkers(&idleCfg, n, 1, false)
	if err != nil {
		return nil, err
	}
	in := watchStop(stop, ws)
	defer func() {
		in.end()
		for _, w := range ws {
			w.closePoller()
		}
	}()

	start := now()
	pl := plan{active: true, start: start, recordFrom: start, sendUntil: never, drainUntil: never}
	finished := make(chan *worker, len(ws))
	errs := make([]error, len(ws))
	for i, w := range ws {
		w.pl = pl
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			errs[i] = w.loop() // until stopped: idle connections are watched for closing
			w.shutdown()
			finished <- w
		}()
	}
	stopAll := func() {
		for _, w := range ws {
			w.halt(false)
		}
		for range ws {
			<-finished
		}
	}

	// Wait until every connection has its echo or has failed.
	resolved, last, lastChange := int64(0), int64(-1), now()
	for {
		resolved = 0
		for _, w := range ws {
			resolved += w.pub.resolved.Load()
		}
		if resolved >= int64(n) || now()-lastChange > int64(idleStall) {
			break
		}
		if resolved != last {
			last, lastChange = resolved, now()
		}
		if !sleepUntilOr(now()+int64(idlePoll), stop) {
			break
		}
	}
	opened := now()

	holdEnd := opened + int64(cfg.Hold)
	rssRead := false
	if cfg.ServerPID > 0 && sleepUntilOr(opened+int64(rssSettle), stop) {
		rssAfter, rssErr = procRSS(cfg.ServerPID)
		rssRead = true
	}
	sleepUntilOr(holdEnd, stop)
	stopAll()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("run failed: %v", err)
	}
	at, interrupted := in.interrupted()
	var connected int64
	for _, w := range ws {
		connected += w.st.connected
	}
	if connected == 0 && !interrupted {
		return nil, cannotConnect(cfg, ws, errs)
	}

	r := newResult(&idleCfg, ws)
	r.Mode = "idle"
	r.DurationS = cfg.Hold.Seconds()
	if interrupted {
		r.Interrupted = true
		r.DurationS = time.Duration(max(0, min(at, holdEnd)-opened)).Round(time.Millisecond).Seconds()
	}
	r.WarmupS = 0
	r.MsgsPerSec, r.MBPerSec = 0, 0
	r.Idle.Conns = n
	r.Idle.Echoed = r.replies
	if rssRead {
		if rssErr != nil {
			r.warn("server RSS unavailable after opening: %v", rssErr)
		} else {
			r.Idle.RSSBefore, r.Idle.RSSAfter = rssBefore, rssAfter
			r.Idle.RSSPerConn = roundDiv(rssAfter-rssBefore, int64(n))
		}
	}
	return r, nil
}

// interruptedIdle is the result of an idle run interrupted before its
// connections were opened.
func interruptedIdle(cfg *Config) *Result {
	r := newResult(cfg, nil)
	r.Mode = "idle"
	r.Interrupted = true
	r.DurationS, r.WarmupS = 0, 0
	r.MsgsPerSec, r.MBPerSec = 0, 0
	r.Idle.Conns = cfg.Idle
	return r
}

// roundDiv is a/b rounded to the nearest integer (b > 0).
func roundDiv(a, b int64) int64 {
	if a < 0 {
		return -((-a + b/2) / b)
	}
	return (a + b/2) / b
}
