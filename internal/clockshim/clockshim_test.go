//go:build linux

package clockshim_test

import (
	"context"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/clockshim"
	"github.com/renewlock/renewlock/internal/redistest"
)

// A redis-server started with a Clock's Env reads that clock: TIME and key
// expiry follow every step, and the host's clock does not move.
func TestClockStepsRedisTime(t *testing.T) {
	clk, err := clockshim.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer clk.Close()
	srv := redistest.StartEnv(t, clk.Env())
	rdb := srv.Client()
	ctx := context.Background()
	skew := func() time.Duration {
		before := time.Now()
		tm, err := rdb.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm.Sub(before)
	}
	for _, off := range []time.Duration{time.Hour, -time.Hour, 0} {
		if err := clk.Set(off); err != nil {
			t.Fatal(err)
		}
		if d := skew() - off; d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Fatalf("offset %v: server clock off by %v from what was set", off, d)
		}
	}

	// A step forward of 10 s ends a 20 s TTL after 10 s; the key lives.
	if err := rdb.Set(ctx, "k", "v", 20*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if got, _ := clk.Step(10 * time.Second); got != 10*time.Second {
		t.Fatalf("Step: offset %v", got)
	}
	if pttl := rdb.PTTL(ctx, "k").Val(); pttl > 10*time.Second || pttl < 9*time.Second {
		t.Fatalf("PTTL after a 10 s step forward = %v, want ≈ 10 s", pttl)
	}
	// Past its expiry: the key is gone at once.
	if _, err := clk.Step(11 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, "k").Val(); n != 0 {
		t.Fatal("key still there after the clock passed its expiry")
	}
	// The clock survives a restart of the server.
	srv.Restart()
	if d := skew() - clk.Offset(); d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Fatalf("after a restart: server clock off by %v from what was set", d)
	}
}
