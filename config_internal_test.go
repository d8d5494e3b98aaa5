package frameloop

import (
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/frameloop/frameloop/internal/poller"
)

// The defaults docs/behaviour.md and README promise, as resolve fills them
// in: from a zero Config and from DefaultConfig.
func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name          string
		cfg           Config
		idle, write   time.Duration
		conns, maxMsg int
	}{
		{"zero Config", Config{}, 0, 0, 4096, 1 << 20},
		{"DefaultConfig", DefaultConfig(), 60 * time.Second, 30 * time.Second, 4096, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.cfg.resolve()
			if err != nil {
				t.Fatal(err)
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"Addr", r.Addr, "127.0.0.1:5882"},
				{"MaxConns", r.MaxConns, tc.conns},
				{"MaxMessage", r.MaxMessage, tc.maxMsg},
				{"IdleTimeout", r.IdleTimeout, tc.idle},
				{"WriteTimeout", r.WriteTimeout, tc.write},
				{"Loops", r.Loops, runtime.NumCPU()},
				{"Backend", r.Backend, poller.Default()},
				{"Balance", r.Balance, "handoff"},
				{"LowWater", r.LowWater, 32 << 10},
				{"HighWater", r.HighWater, 64 << 10},
				{"MaxQueued", r.MaxQueued, 4 << 20},
				{"MaxInputMemory", r.MaxInputMemory, int64(256 << 20)},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
		})
	}
}

// Derived defaults follow what was set.
func TestConfigDerivedDefaults(t *testing.T) {
	r, err := Config{HighWater: 1000}.resolve()
	if err != nil || r.LowWater != 500 {
		t.Errorf("HighWater 1000: LowWater %d (%v), want 500", r.LowWater, err)
	}
	r, err = Config{LowWater: 100 << 10}.resolve()
	if err != nil || r.HighWater != 100<<10 {
		t.Errorf("LowWater 100 KiB: HighWater %d (%v), want 100 KiB", r.HighWater, err)
	}
	r, err = Config{MaxMessage: 1 << 30}.resolve()
	if err != nil || r.MaxInputMemory < 2<<30 {
		t.Errorf("MaxMessage 1 GiB: MaxInputMemory %d (%v), want room for two maximum frames", r.MaxInputMemory, err)
	}
	r, err = Config{MaxInputMemory: -1}.resolve()
	if err != nil || r.MaxInputMemory != -1 {
		t.Errorf("MaxInputMemory -1: %d (%v), want -1 (no bound)", r.MaxInputMemory, err)
	}
}

// Bad values are refused with one line naming the Config field; timeouts
// so long that now+timeout would overflow the loop's clock among them.
func TestConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{IdleTimeout: math.MaxInt64}, "Config.IdleTimeout"},
		{Config{WriteTimeout: math.MaxInt64 - 1}, "Config.WriteTimeout"},
		{Config{IdleTimeout: -1}, "Config.IdleTimeout"},
		{Config{MaxConns: -1}, "Config.MaxConns"},
		{Config{MaxMessage: 1<<30 + 1}, "Config.MaxMessage"},
		{Config{Loops: 1025}, "Config.Loops"},
		{Config{Backend: "select"}, "Config.Backend"},
		{Config{Balance: "random"}, "Config.Balance"},
		{Config{LowWater: 10, HighWater: 5}, "Config.LowWater"},
		{Config{MaxQueued: 1}, "Config.MaxQueued"},
		{Config{MaxInputMemory: 1 << 20}, "Config.MaxInputMemory"},
	} {
		_, err := tc.cfg.resolve()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line starting with %s", tc.cfg, err, tc.field)
		}
	}
}
