package renewlock_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

func TestBadInput(t *testing.T) {
	srv, rdb, c := setup(t)
	ctx := ctxT(t, 10*time.Second)

	for _, tc := range []struct {
		name string
		opt  renewlock.Option
		want string // the message names the value
	}{
		{"zero ttl", renewlock.WithTTL(0), "ttl 0s"},
		{"negative ttl", renewlock.WithTTL(-time.Second), "ttl -1s"},
		{"ttl below minimum", renewlock.WithTTL(time.Millisecond), "ttl 1ms is below the minimum 100ms"},
		{"ttl above maximum", renewlock.WithTTL(48 * time.Hour), "ttl 48h0m0s is above the maximum 24h0m0s"},
		{"negative interval", renewlock.WithRenewInterval(-time.Second), "renew interval -1s"},
		{"tiny interval", renewlock.WithRenewInterval(time.Microsecond), "renew interval 1µs"},
		{"interval ≥ ttl", renewlock.WithRenewInterval(20 * time.Second), "renew interval 20s must be shorter than ttl 10s"},
		{"interval ≥ validity", renewlock.WithRenewInterval(9950 * time.Millisecond), "renew interval 9.95s must be shorter than the validity period"},
		{"negative drift", renewlock.WithDrift(-0.1), "drift -0.1"},
		{"drift too big", renewlock.WithDrift(0.5), "drift 0.5"},
		{"NaN drift", renewlock.WithDrift(math.NaN()), "drift NaN"},
		{"negative margin", renewlock.WithSafetyMargin(-time.Millisecond), "safety margin -1ms"},
		{"margin eats validity", renewlock.WithSafetyMargin(9 * time.Second), "validity period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, renewlock.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%s: err = %v, want ErrInvalidArgument naming %q", what, err, tc.want)
				}
			}
			_, err := renewlock.New(rdb, tc.opt)
			check("New", err)
			_, err = c.TryAcquire(ctx, "k", tc.opt)
			check("TryAcquire", err)
			_, err = c.Acquire(ctx, "k", tc.opt)
			check("Acquire", err)
			check("Do", c.Do(ctx, "k", func(context.Context, *renewlock.Lock) error { return nil }, tc.opt))
		})
	}

	t.Run("empty key", func(t *testing.T) {
		for what, err := range map[string]error{
			"TryAcquire": func() error { _, err := c.TryAcquire(ctx, ""); return err }(),
			"Acquire":    func() error { _, err := c.Acquire(ctx, ""); return err }(),
		} {
			if !errors.Is(err, renewlock.ErrInvalidArgument) || !strings.Contains(err.Error(), "empty key") {
				t.Fatalf("%s: err = %v", what, err)
			}
		}
	})
	t.Run("nil client", func(t *testing.T) {
		for _, rdb := range []redis.UniversalClient{nil, (*redis.Client)(nil), (*redis.ClusterClient)(nil)} {
			if _, err := renewlock.New(rdb); !errors.Is(err, renewlock.ErrInvalidArgument) || !strings.Contains(err.Error(), "nil Redis client") {
				t.Fatalf("New(%#v): err = %v", rdb, err)
			}
		}
	})
	t.Run("nil context and function", func(t *testing.T) {
		//lint:ignore SA1012 checking that a nil context is rejected
		if _, err := c.Acquire(nil, "k"); !errors.Is(err, renewlock.ErrInvalidArgument) { //nolint:staticcheck
			t.Fatalf("Acquire(nil ctx): %v", err)
		}
		if err := c.Do(ctx, "k", nil); !errors.Is(err, renewlock.ErrInvalidArgument) {
			t.Fatalf("Do(nil fn): %v", err)
		}
	})
	t.Run("keys are arbitrary bytes", func(t *testing.T) {
		for _, key := range []string{"a b", "{tag}", "}{", "\x00\xff", strings.Repeat("k", 10000), "ключ", "*?[]"} {
			l, err := c.TryAcquire(ctx, key)
			if err != nil {
				t.Fatalf("key %q: %v", key, err)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})
	_ = srv
}

// Options given to New are the defaults; options per call override them.
func TestOptionsApply(t *testing.T) {
	_, rdb, c := setup(t, renewlock.WithTTL(2*time.Second), renewlock.WithKeyPrefix("app:"))
	ctx := ctxT(t, 10*time.Second)
	l, err := c.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if pttl := rdb.PTTL(ctx, "app:k").Val(); pttl <= time.Second || pttl > 2*time.Second {
		t.Fatalf("client default TTL not applied: PTTL %v", pttl)
	}
	l2, err := c.TryAcquire(ctx, "k2", renewlock.WithTTL(5*time.Second), renewlock.WithHolder("job-42"))
	if err != nil {
		t.Fatal(err)
	}
	if pttl := rdb.PTTL(ctx, "app:k2").Val(); pttl <= 4*time.Second {
		t.Fatalf("per-call TTL not applied: PTTL %v", pttl)
	}
	if h := rdb.HGet(ctx, "app:k2", "h").Val(); h != "job-42" {
		t.Fatalf("holder = %q", h)
	}
	_ = l.Release(ctx)
	_ = l2.Release(ctx)
}

// NOSCRIPT after SCRIPT FLUSH is handled for every operation, including
// the pipelined renewal.
func TestScriptFlush(t *testing.T) {
	_, rdb, c := setup(t, renewlock.WithTTL(300*time.Millisecond))
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if closedWithin(l.Done(), 150*time.Millisecond) {
			t.Fatalf("lock lost after SCRIPT FLUSH: %v", l.Err())
		}
	}
	rdb.ScriptFlush(ctx)
	if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("TryAcquire after flush: %v", err)
	}
	rdb.ScriptFlush(ctx)
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release after flush: %v", err)
	}
}

// Close releases held locks, ends blocked waits and stops everything.
func TestClose(t *testing.T) {
	srv, rdb, other := setup(t)
	c := newClient(t, srv.Client())
	ctx := ctxT(t, 10*time.Second)
	mine, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := other.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := c.Acquire(ctx, theirs.Key()); errc <- err }()
	waitFor(t, 5*time.Second, "waiter subscribed", func() bool {
		return queued(t, rdb, renewlock.DefaultKeyPrefix+theirs.Key()) == 1
	})

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, renewlock.ErrClientClosed) {
		t.Fatalf("blocked Acquire after Close: %v", err)
	}
	if !closedWithin(mine.Done(), 0) || !errors.Is(mine.Err(), renewlock.ErrClientClosed) {
		t.Fatalf("held lock after Close: Err = %v", mine.Err())
	}
	if rdb.HExists(ctx, renewlock.DefaultKeyPrefix+mine.Key(), "o").Val() {
		t.Fatal("Close left the lock held in Redis")
	}
	if _, err := c.TryAcquire(ctx, "x"); !errors.Is(err, renewlock.ErrClientClosed) {
		t.Fatalf("TryAcquire after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if theirs.Err() != nil {
		t.Fatalf("another client's lock affected: %v", theirs.Err())
	}
}

// A panic inside Do still releases the lock.
func TestDoReleasesOnPanic(t *testing.T) {
	_, rdb, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic did not propagate")
			}
		}()
		_ = c.Do(ctx, key, func(context.Context, *renewlock.Lock) error { panic("boom") })
	}()
	if rdb.HExists(ctx, renewlock.DefaultKeyPrefix+key, "o").Val() {
		t.Fatal("lock still held after a panic in Do")
	}
}

// Do releases on a fresh context: a cancelled caller ctx still releases.
func TestDoReleasesAfterCancel(t *testing.T) {
	_, rdb, c := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	key := uniqueKey(t)
	err := c.Do(ctx, key, func(ctx context.Context, l *renewlock.Lock) error {
		cancel()
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v", err)
	}
	if rdb.HExists(context.Background(), renewlock.DefaultKeyPrefix+key, "o").Val() {
		t.Fatal("lock still held after Do with a cancelled context")
	}
}

func FuzzAcquire(f *testing.F) {
	srv := startForFuzz(f)
	rdb := srv.Client()
	c := newClient(f, rdb)
	ctx := context.Background()
	f.Add("k", int64(time.Second), int64(0), 0.01, int64(0), "p:")
	f.Add("", int64(-1), int64(-1), -1.0, int64(-1), "")
	f.Add("{x}", int64(100*time.Millisecond), int64(99*time.Millisecond), 0.49, int64(time.Millisecond), "{")
	f.Add("\x00", int64(math.MaxInt64), int64(math.MaxInt64), math.Inf(1), int64(math.MinInt64), "}")
	f.Fuzz(func(t *testing.T, key string, ttl, interval int64, drift float64, margin int64, prefix string) {
		opts := []renewlock.Option{
			renewlock.WithTTL(time.Duration(ttl)),
			renewlock.WithRenewInterval(time.Duration(interval)),
			renewlock.WithDrift(drift),
			renewlock.WithSafetyMargin(time.Duration(margin)),
			renewlock.WithKeyPrefix(prefix),
		}
		l, err := c.TryAcquire(ctx, key, opts...)
		if err != nil {
			if !errors.Is(err, renewlock.ErrInvalidArgument) && !errors.Is(err, renewlock.ErrNotAcquired) {
				t.Fatalf("TryAcquire(%q): unexpected error %v", key, err)
			}
			return
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
	})
}
