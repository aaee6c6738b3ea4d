package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// countRoundTrips counts from now on the round trips rdb makes: one per
// command, one per pipeline.
func countRoundTrips(rdb *redis.Client) *atomic.Int64 {
	var n atomic.Int64
	rdb.AddHook(roundTripHook{&n})
	return &n
}

type roundTripHook struct{ n *atomic.Int64 }

func (roundTripHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h roundTripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h roundTripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// commandCalls returns the number of calls of cmd from INFO commandstats.
func commandCalls(t *testing.T, rdb *redis.Client, cmd string) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			return n
		}
	}
	return 0
}

// Renewal only extends a lease that is still ours: when another owner has
// replaced the key, or it was deleted, the holder hears of it within one
// renew interval, and the other owner's lease is left alone.
func TestLossSignalledWithinOneInterval(t *testing.T) {
	const ttl, interval = 3 * time.Second, 200 * time.Millisecond
	for _, tc := range []struct {
		name   string
		meddle func(ctx context.Context, rdb *redis.Client, rkey string)
	}{
		{"replaced", func(ctx context.Context, rdb *redis.Client, rkey string) {
			rdb.HSet(ctx, rkey, "o", "someone-else")
		}},
		{"deleted", func(ctx context.Context, rdb *redis.Client, rkey string) {
			rdb.Del(ctx, rkey)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rdb, c := setup(t, renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval))
			ctx := ctxT(t, 10*time.Second)
			key := uniqueKey(t)
			l, err := c.Acquire(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			rkey := renewlock.DefaultKeyPrefix + key
			tc.meddle(ctx, rdb, rkey)
			start := time.Now()
			// One interval, plus slack for a loaded machine; far below the TTL.
			if !closedWithin(l.Done(), interval+time.Second) {
				t.Fatalf("loss not signalled within %v", interval+time.Second)
			}
			t.Logf("loss signalled %v after the key was taken", time.Since(start))
			if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
				t.Fatalf("Err = %v, want ErrLeaseLost", l.Err())
			}
			if tc.name == "replaced" {
				if o := rdb.HGet(ctx, rkey, "o").Val(); o != "someone-else" {
					t.Fatalf("renewal touched the new owner's lease: owner now %q", o)
				}
				// No renewal extends the other owner's lease any more.
				p1 := rdb.PTTL(ctx, rkey).Val()
				time.Sleep(3 * interval)
				if p2 := rdb.PTTL(ctx, rkey).Val(); p2 > p1-2*interval {
					t.Fatalf("new owner's lease was extended: PTTL %v, %v later %v", p1, 3*interval, p2)
				}
			} else if rdb.Exists(ctx, rkey).Val() != 0 {
				t.Fatal("renewal re-created a deleted lease")
			}
			// Release after loss reports it and leaves the other owner alone.
			if err := l.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
				t.Fatalf("Release after loss = %v, want ErrLeaseLost", err)
			}
			if tc.name == "replaced" && rdb.HGet(ctx, rkey, "o").Val() != "someone-else" {
				t.Fatal("Release after loss removed the new owner's lease")
			}
		})
	}
}

// When Redis stops answering, the holder is told at its validity deadline,
// which comes before Redis itself would expire the key.
func TestLossSignalledBeforeExpiryWhenRedisPaused(t *testing.T) {
	const ttl, interval = 1500 * time.Millisecond, 300 * time.Millisecond
	srv, rdb, c := setup(t, renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval),
		renewlock.WithDrift(0.02))
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	rkey := renewlock.DefaultKeyPrefix + key
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}

	// Catch the instant right after a renewal, then freeze Redis.
	expiry := justRenewed(t, ctx, rdb, rkey)
	srv.Pause()
	defer srv.Resume()
	paused := time.Now()

	select {
	case <-l.Done():
	case <-time.After(ttl + 5*time.Second):
		t.Fatal("loss never signalled while Redis was paused")
	}
	lost := time.Now()
	if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("Err = %v, want ErrLeaseLost", l.Err())
	}
	lead := expiry.Sub(lost)
	t.Logf("paused %v before loss; loss signalled %v before the key's expiry", lost.Sub(paused), lead)
	if lead <= 0 {
		t.Fatalf("loss signalled %v AFTER the key expired in Redis", -lead)
	}
	if held := lost.Sub(paused); held < ttl/2 {
		t.Fatalf("loss signalled only %v after the pause: the deadline is far too early", held)
	}
}

// The same when Redis is gone altogether (killed): renewals fail fast, are
// retried, and the deadline still decides.
func TestLossSignalledWhenRedisDown(t *testing.T) {
	const ttl = 600 * time.Millisecond
	srv, _, c := setup(t, renewlock.WithTTL(ttl))
	ctx := ctxT(t, 10*time.Second)
	l, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	acquired := time.Now()
	srv.Kill()
	if !closedWithin(l.Done(), ttl+5*time.Second) {
		t.Fatal("loss never signalled with Redis down")
	}
	if d := time.Since(acquired); d > ttl {
		t.Fatalf("loss signalled %v after acquisition, after the %v lease could have expired", d, ttl)
	}
	if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("Err = %v, want ErrLeaseLost", l.Err())
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := l.Release(rctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Release = %v, want ErrLeaseLost", err)
	}
}

// One client holding 10,000 locks renews them in a few pipelined script
// calls per tick, not one round trip per lock, and with no goroutine per lock.
func TestRenewalIsBatched(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 locks")
	}
	const n = 10000
	const ttl, interval = 3 * time.Second, 500 * time.Millisecond
	_, rdb, c := setup(t, renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval))
	ctx := ctxT(t, time.Minute)

	goroutinesBefore := runtime.NumGoroutine()
	locks := make([]*renewlock.Lock, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 16 {
				var err error
				if locks[i], err = c.TryAcquire(ctx, fmt.Sprintf("batch-%d", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if g := runtime.NumGoroutine() - goroutinesBefore; g > 20 {
		t.Fatalf("%d more goroutines while holding %d locks", g, n)
	}

	// Let the renewals of locks taken at different instants fall into step,
	// then watch several renew intervals.
	time.Sleep(2 * interval)
	before := commandCalls(t, rdb, "evalsha") + commandCalls(t, rdb, "eval")
	trips := countRoundTrips(rdb)
	const window = 5 * interval
	time.Sleep(window) // the renewals under observation take this long
	calls := commandCalls(t, rdb, "evalsha") + commandCalls(t, rdb, "eval") - before
	roundTrips := trips.Load() - 1 // minus the INFO above
	t.Logf("%d round trips in %v carried the renewals of %d locks", roundTrips, window, n)
	if roundTrips > 3*int64(window/interval) {
		t.Fatalf("%d round trips in %v: renewal is not batched into one round trip per tick", roundTrips, window)
	}
	for _, l := range locks {
		if l.Err() != nil {
			t.Fatalf("lock %s lost while held: %v", l.Key(), l.Err())
		}
	}
	// Each renewal of all n locks takes ceil(n/128) script calls.
	perRound := int64((n + 127) / 128)
	rounds := float64(calls) / float64(perRound)
	t.Logf("%d script calls in %v for %d locks: %.1f full renewal rounds (interval %v)", calls, window, n, rounds, interval)
	if calls > 3*perRound*int64(window/interval) {
		t.Fatalf("%d script calls in %v: not batched (one per lock would be %d)", calls, window, n*int(window/interval))
	}
	if calls < perRound {
		t.Fatalf("only %d script calls in %v: locks were not renewed", calls, window)
	}
	ttlNow := rdb.PTTL(ctx, renewlock.DefaultKeyPrefix+"batch-0").Val()
	if ttlNow < ttl-2*interval {
		t.Fatalf("lease of a held lock is down to %v: not being renewed", ttlNow)
	}
	for _, l := range locks {
		_ = l.Release(ctx)
	}
}

// Renewal does not depend on the ctx the lock was acquired with: cancelling
// it after Acquire returns leaves the lock held and renewed.
func TestRenewalOutlivesAcquireContext(t *testing.T) {
	const ttl = 300 * time.Millisecond
	_, _, c := setup(t, renewlock.WithTTL(ttl))
	ctx, cancel := context.WithCancel(context.Background())
	l, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if closedWithin(l.Done(), 4*ttl) {
		t.Fatalf("lock lost after its acquire ctx was cancelled: %v", l.Err())
	}
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Out of memory (maxmemory reached, noeviction), every lease keeps being
// renewed: a held mutex, a semaphore permit and a read lock (their lease
// is a hash field, HSET), and the waiters' places (HSET) renewed in the
// same script call. Redis refuses a script whose first write is an HSET,
// and a batch failed as a whole that way before the renew script began with
// a write that changes nothing: the
// chaos suite's oom scenario lost mutexes because of the waiters beside
// them, and shared locks could not be renewed at all.
func TestRenewalOutOfMemoryWithWaiters(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	const ttl = time.Second
	var renewals, failed atomic.Int64
	obs := &renewlock.Observer{Renewed: func(ev renewlock.RenewEvent) {
		renewals.Add(1)
		if ev.Failed > 0 {
			failed.Add(1)
		}
	}}
	c := newClient(t, srv.Client(), renewlock.WithTTL(ttl), renewlock.WithObserver(obs))
	other := newClient(t, srv.Client(), renewlock.WithTTL(ttl))
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	permit, err := c.AcquirePermit(ctx, key+"/sem", 2)
	if err != nil {
		t.Fatal(err)
	}
	read, err := c.AcquireRead(ctx, key+"/rw")
	if err != nil {
		t.Fatal(err)
	}
	held := []*renewlock.Lock{l, permit, read}
	// Five keys held by another client, each with c waiting in its queue.
	const waiters = 5
	wctx, stopWaiting := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range waiters {
		k := fmt.Sprintf("%s/w%d", key, i)
		if _, err := other.Acquire(ctx, k); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if wl, err := c.Acquire(wctx, k); err == nil {
				_ = wl.Release(context.Background())
			}
		}()
		waitFor(t, 5*time.Second, "a waiter", func() bool {
			return queued(t, rdb, renewlock.DefaultKeyPrefix+k) == 1
		})
	}
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", "1"}} {
		if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	oom := true
	lift := func() {
		if oom {
			if err := rdb.ConfigSet(context.Background(), "maxmemory", "0").Err(); err != nil {
				t.Error(err)
			}
			oom = false
		}
	}
	defer lift()
	// The write of a new lock is refused: Redis is out of memory indeed.
	if _, err := other.TryAcquire(ctx, key+"/new"); !errors.Is(err, renewlock.ErrRejected) && !strings.Contains(fmt.Sprint(err), "OOM") {
		t.Fatalf("TryAcquire out of memory = %v, want an OOM error", err)
	}
	before, failedBefore := renewals.Load(), failed.Load()
	time.Sleep(3 * ttl)
	for _, h := range held {
		if err := h.Err(); err != nil {
			t.Errorf("%s lost out of memory: %v", h.Key(), err)
		}
	}
	lift()
	if n := renewals.Load() - before; n < 5 {
		t.Fatalf("only %d renewal round trips in 3 TTLs", n)
	}
	if n := failed.Load() - failedBefore; n > 0 {
		t.Errorf("%d renewal round trips failed out of memory", n)
	}
	stopWaiting()
	wg.Wait()
	for _, h := range held {
		if err := h.Release(ctx); err != nil {
			t.Error(err)
		}
	}
}

// justRenewed waits until the holder's renewal of rkey has just run (its
// PTTL jumped up) and returns when Redis will expire it, measured on this
// process's clock: no earlier than the moment before the PTTL read + PTTL.
func justRenewed(t *testing.T, ctx context.Context, rdb *redis.Client, rkey string) time.Time {
	t.Helper()
	prev := rdb.PTTL(ctx, rkey).Val()
	for ctx.Err() == nil {
		before := time.Now()
		pttl := rdb.PTTL(ctx, rkey).Val()
		if pttl > prev {
			return before.Add(pttl)
		}
		prev = pttl
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no renewal seen")
	return time.Time{}
}
