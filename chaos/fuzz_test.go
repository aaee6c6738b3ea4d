package chaos

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// FuzzOptions feeds arbitrary option values to New and to one acquisition.
// Nothing may panic; a rejection must wrap ErrInvalidArgument and name a
// value; an acceptance must satisfy the documented timing rules. No Redis is
// contacted: New does not, and the acquisition uses a cancelled context.
func FuzzOptions(f *testing.F) {
	f.Add(int64(time.Second), int64(0), 0.01, int64(10*time.Millisecond), "renewlock:")
	f.Add(int64(100*time.Millisecond), int64(10*time.Millisecond), 0.0, int64(0), "")
	f.Add(int64(99*time.Millisecond), int64(0), 0.5, int64(-1), "{tag}")
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), math.NaN(), int64(math.MinInt64), "\x00")
	f.Add(int64(time.Second), int64(time.Second), math.Copysign(0, -1), int64(time.Second), "p")
	f.Add(int64(-1), int64(-1), math.Inf(1), int64(1), "p")
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	f.Cleanup(func() { _ = rdb.Close() })
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	f.Fuzz(func(t *testing.T, ttl, renew int64, drift float64, margin int64, prefix string) {
		opts := []renewlock.Option{
			renewlock.WithTTL(time.Duration(ttl)), renewlock.WithRenewInterval(time.Duration(renew)),
			renewlock.WithDrift(drift), renewlock.WithSafetyMargin(time.Duration(margin)),
			renewlock.WithKeyPrefix(prefix), quietLog,
		}
		c, err := renewlock.New(rdb, opts...)
		valid := checkOutcome(t, "New", err, time.Duration(ttl), time.Duration(renew), drift, time.Duration(margin))
		if c == nil {
			return
		}
		defer c.Close()
		if !valid {
			t.Fatalf("New accepted invalid options ttl=%v renew=%v drift=%v margin=%v", time.Duration(ttl), time.Duration(renew), drift, time.Duration(margin))
		}
		// The same values per call, on a client with defaults.
		d, err := renewlock.New(rdb, quietLog)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_, err = d.TryAcquire(cancelled, "k", opts...)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("TryAcquire with valid options on a cancelled ctx = %v, want context.Canceled", err)
		}
	})
}

// checkOutcome reports whether the values are valid by the documented
// rules, and fails t if err disagrees.
func checkOutcome(t *testing.T, what string, err error, ttl, renew time.Duration, drift float64, margin time.Duration) bool {
	t.Helper()
	iv := renew
	if iv == 0 {
		iv = ttl / 3
	}
	validity := time.Duration(float64(ttl)*(1-drift)) - margin
	valid := ttl >= renewlock.MinTTL && drift >= 0 && drift < 0.5 && margin >= 0 &&
		renew >= 0 && iv >= renewlock.MinRenewInterval && iv < ttl && iv < validity
	switch {
	case err == nil && !valid:
		t.Fatalf("%s accepted ttl=%v renew=%v drift=%v margin=%v", what, ttl, renew, drift, margin)
	case err != nil && !errors.Is(err, renewlock.ErrInvalidArgument):
		t.Fatalf("%s: %v does not wrap ErrInvalidArgument", what, err)
	case err != nil && valid:
		t.Fatalf("%s rejected valid ttl=%v renew=%v drift=%v margin=%v: %v", what, ttl, renew, drift, margin, err)
	case err != nil && !strings.ContainsAny(err.Error(), "0123456789N"):
		t.Fatalf("%s: %q names no value", what, err)
	}
	return valid
}

// FuzzKeys takes, inspects and releases locks on arbitrary keys (any bytes)
// on a real Redis: the hash lands at exactly prefix+key, the owner is
// recorded, release deletes only the owner, and the next token is larger.
func FuzzKeys(f *testing.F) {
	for _, k := range []string{"", "a", "{tag}", "x\x00y", "ключ", strings.Repeat("k", 4096), "\xff\xfe", "renewlock:", "*", "a b\r\n"} {
		f.Add(k)
	}
	srv := redistest.Start(f)
	rdb := srv.Client()
	c, err := renewlock.New(rdb, quietLog, renewlock.WithTTL(time.Second))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close() })

	f.Fuzz(func(t *testing.T, key string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := c.TryAcquire(ctx, key)
		if key == "" {
			if !errors.Is(err, renewlock.ErrInvalidArgument) {
				t.Fatalf("TryAcquire(\"\") = %v, want ErrInvalidArgument", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("TryAcquire(%q): %v", key, err)
		}
		rkey := renewlock.DefaultKeyPrefix + key
		owner, err := rdb.HGet(ctx, rkey, "o").Result()
		if err != nil || len(owner) != 32 {
			t.Fatalf("key %q: owner field %q, %v", key, owner, err)
		}
		if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
			t.Fatalf("second TryAcquire(%q) = %v, want ErrNotAcquired", key, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("Release(%q): %v", key, err)
		}
		if n, _ := rdb.HExists(ctx, rkey, "o").Result(); n {
			t.Fatalf("key %q still has an owner after Release", key)
		}
		l2, err := c.TryAcquire(ctx, key)
		if err != nil {
			t.Fatalf("TryAcquire(%q) after release: %v", key, err)
		}
		if l2.Token() <= l.Token() {
			t.Fatalf("key %q: token went from %d to %d", key, l.Token(), l2.Token())
		}
		if err := l2.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}
