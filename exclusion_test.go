package renewlock_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
)

// Two clients × 32 goroutines hammer one key; a critical-section counter
// must never exceed 1, and tokens seen inside must strictly increase.
func TestMutualExclusion(t *testing.T) {
	srv, _, c1 := setup(t)
	c2 := newClient(t, srv.Client())
	ctx := ctxT(t, 2*time.Minute)
	key := uniqueKey(t)

	const perGoroutine = 40 // 2 × 32 × 40 = 2,560 acquisitions
	var inside, maxInside, total atomic.Int64
	var mu sync.Mutex
	var lastToken uint64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, c := range []*renewlock.Client{c1, c2} {
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perGoroutine; i++ {
					err := c.Do(ctx, key, func(ctx context.Context, l *renewlock.Lock) error {
						n := inside.Add(1)
						if n > maxInside.Load() {
							maxInside.Store(n)
						}
						mu.Lock()
						if l.Token() <= lastToken {
							t.Errorf("token %d after %d", l.Token(), lastToken)
						}
						lastToken = l.Token()
						mu.Unlock()
						total.Add(1)
						inside.Add(-1)
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m := maxInside.Load(); m != 1 {
		t.Fatalf("%d holders inside the critical section at once", m)
	}
	if n := total.Load(); n != 2*32*perGoroutine {
		t.Fatalf("%d acquisitions, want %d", n, 2*32*perGoroutine)
	}
}

// Tokens go up over 1,000 hand-offs, across lease expiry and across a Redis
// restart that lost every key.
func TestTokensOnlyGoUp(t *testing.T) {
	srv, rdb, c := setup(t, renewlock.WithTTL(renewlock.MinTTL))
	ctx := ctxT(t, time.Minute)
	key := uniqueKey(t)
	var last uint64
	next := func(what string) *renewlock.Lock {
		t.Helper()
		l, err := c.Acquire(ctx, key)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if l.Token() <= last {
			t.Fatalf("%s: token %d not above %d", what, l.Token(), last)
		}
		last = l.Token()
		return l
	}
	for i := 0; i < 1000; i++ {
		l := next("hand-off " + strconv.Itoa(i))
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Expiry: abandon the lease (delete nothing, stop renewing by closing a
	// second client's connection first) and let Redis expire it.
	c2 := newClient(t, srv.Client(), renewlock.WithTTL(renewlock.MinTTL))
	l2, err := c2.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Token() <= last {
		t.Fatalf("token %d not above %d", l2.Token(), last)
	}
	last = l2.Token()
	crash(t, c2) // stops renewing without releasing
	next("after expiry")

	srv.Restart()
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("after restart DBSIZE = %d, %v; want an empty server", n, err)
	}
	next("after restart") // the old lease is gone with the data; its renewal fails
}

// crash makes c stop renewing without releasing anything, as if its process
// died: the Redis connection pool is closed under it, then c is closed.
func crash(t *testing.T, c *renewlock.Client) {
	t.Helper()
	renewlock.CrashForTest(c)
}

// No per-key state outlives the lock for long: after release only a
// tombstone with a TTL remains, and after it expires nothing does.
func TestNoStateGrowsForever(t *testing.T) {
	_, rdb, c := setup(t, renewlock.WithTTL(renewlock.MinTTL))
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 200; i++ {
		l, err := c.Acquire(ctx, uniqueKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		// -2: the tombstone expired since KEYS; -1 would be a key that stays forever.
		if ttl := rdb.PTTL(ctx, k).Val(); ttl == -1 || ttl > renewlock.MinTTL {
			t.Fatalf("key %q has TTL %v after release, want at most %v", k, ttl, renewlock.MinTTL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for rdb.DBSize(ctx).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keys still in Redis long after every lock was released", rdb.DBSize(ctx).Val())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Many goroutines whose contexts end at random moments — before, during and
// after their calls are sent, alone or in shared pipelines — never leave a
// lock held behind, and never hang.
func TestCancelledCallsLeaveNothingBehind(t *testing.T) {
	srv, rdb, _ := setup(t)
	c, err := renewlock.New(srv.Client(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var got atomic.Int64
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				timeouts := []time.Duration{0, 200 * time.Microsecond, 500 * time.Microsecond,
					time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond}
				ctx, cancel := context.WithTimeout(context.Background(), timeouts[(g+i)%len(timeouts)])
				l, err := c.Acquire(ctx, "k"+strconv.Itoa((g+i)%8))
				cancel()
				if err == nil {
					got.Add(1)
					_ = l.Release(context.Background())
				}
			}
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil { // waits for clean-ups in flight
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := rdb.Keys(ctx, "*").Val()
	for _, k := range keys {
		if o := rdb.HGet(ctx, k, "o").Val(); o != "" {
			t.Fatalf("lock %q left held by %s after every caller gave up or released", k, o)
		}
	}
	t.Logf("%d of %d acquisitions succeeded before their deadline", got.Load(), 64*40)
}
