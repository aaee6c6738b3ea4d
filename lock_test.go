package renewlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
)

func TestAcquireRelease(t *testing.T) {
	_, rdb, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)

	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if l.Key() != key || l.Token() == 0 || l.Err() != nil {
		t.Fatalf("lock: key %q token %d err %v", l.Key(), l.Token(), l.Err())
	}
	if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("TryAcquire on a held key: %v, want ErrNotAcquired", err)
	}
	ttl := rdb.PTTL(ctx, renewlock.DefaultKeyPrefix+key).Val()
	if ttl <= 9*time.Second || ttl > renewlock.DefaultTTL {
		t.Fatalf("lease TTL in Redis = %v, want ≈ %v", ttl, renewlock.DefaultTTL)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(l.Done(), 0) || !errors.Is(l.Err(), renewlock.ErrReleased) {
		t.Fatalf("after Release: Err = %v, Done closed = %v", l.Err(), closedWithin(l.Done(), 0))
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	l2, err := c.TryAcquire(ctx, key)
	if err != nil {
		t.Fatalf("TryAcquire after release: %v", err)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token went from %d to %d", l.Token(), l2.Token())
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRenewalKeepsLockAlive(t *testing.T) {
	// A TTL of 600 ms leaves the renewals (every 200 ms) ≈ 390 ms of slack
	// for a loaded machine before the deadline.
	_, rdb, c := setup(t, renewlock.WithTTL(600*time.Millisecond))
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if closedWithin(l.Done(), 4*time.Second) { // ≈ 7 TTLs
		t.Fatalf("lock lost while held: %v", l.Err())
	}
	if n := rdb.Exists(ctx, renewlock.DefaultKeyPrefix+key).Val(); n != 1 {
		t.Fatalf("key gone from Redis while held")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBlockedAcquireWakesOnRelease(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *renewlock.Lock)
	go func() {
		l2, err := c.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	time.Sleep(100 * time.Millisecond)
	released := time.Now()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := <-got
	// The TTL is 10 s: anything near that would be the fallback timer.
	if d := time.Since(released); d > 2*time.Second {
		t.Fatalf("waiter woke %v after release", d)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDoCancelsOnLoss(t *testing.T) {
	_, rdb, c := setup(t, renewlock.WithTTL(300*time.Millisecond))
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	err := c.Do(ctx, key, func(ctx context.Context, l *renewlock.Lock) error {
		rdb.Del(ctx, renewlock.DefaultKeyPrefix+key)
		<-ctx.Done()
		return context.Cause(ctx)
	})
	if !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Do = %v, want ErrLeaseLost", err)
	}
}

// Concurrent Releases of one lock release it once; every caller gets nil.
func TestConcurrentRelease(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	waiter := make(chan *renewlock.Lock, 1)
	go func() {
		l2, err := c.Acquire(ctx, key) // a local waiter: Release hands off to it
		if err != nil {
			t.Error(err)
		}
		waiter <- l2
	}()
	time.Sleep(50 * time.Millisecond)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() { errs <- l.Release(ctx) }()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Release: %v", err)
		}
	}
	l2 := <-waiter
	if l2.Err() != nil {
		t.Fatalf("the waiter's lock: %v", l2.Err())
	}
	_ = l2.Release(ctx)
}
