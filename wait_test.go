package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

func scriptCalls(t *testing.T, rdb *redis.Client) int64 {
	return commandCalls(t, rdb, "evalsha") + commandCalls(t, rdb, "eval")
}

// queued returns how many waiters the lock at the Redis key rkey has in
// its queue.
func queued(t *testing.T, rdb redis.Cmdable, rkey string) int64 {
	t.Helper()
	n, err := rdb.HGet(context.Background(), rkey, "qn").Int64()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A blocked Acquire does not poll: while the holder keeps its 10 s lease,
// the waiter makes no more than its initial attempts; it wakes on release.
func TestWaitIsEventDriven(t *testing.T) {
	srv, rdb, holder := setup(t)
	waiterClient := newClient(t, srv.Client())
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	l, err := holder.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	before := scriptCalls(t, rdb)
	got := make(chan *renewlock.Lock, 1)
	go func() {
		l2, err := waiterClient.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	waitFor(t, 5*time.Second, "the waiter's subscription", func() bool {
		return queued(t, rdb, renewlock.DefaultKeyPrefix+key) == 1
	})
	time.Sleep(time.Second) // a poller would make dozens of attempts in this second
	if n := scriptCalls(t, rdb) - before; n > 2 {
		t.Fatalf("waiter made %d attempts in ~1 s while the lock was held: polling", n)
	}
	released := time.Now()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := <-got
	if l2 == nil {
		t.FailNow()
	}
	// The fallback timer would fire at the holder's TTL (≈ 10 s).
	if d := time.Since(released); d > 2*time.Second {
		t.Fatalf("waiter took %v to wake after release", d)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := queued(t, rdb, renewlock.DefaultKeyPrefix+key); n != 0 {
		t.Fatalf("%d waiters left in the queue", n)
	}
}

// A release hands the lock to one waiter and wakes nobody else: one script
// call per hand-off, however many wait.
func TestNoThunderingHerd(t *testing.T) {
	srv, rdb, holder := setup(t)
	waiters := newClient(t, srv.Client())
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	// Load the scripts first, so that a NOSCRIPT retry does not count.
	if err := holder.Do(ctx, key+"/warm-up", func(context.Context, *renewlock.Lock) error { return nil }); err != nil {
		t.Fatal(err)
	}
	l, err := holder.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	acquired := make(chan *renewlock.Lock, n)
	for i := 0; i < n; i++ {
		go func() {
			l, err := waiters.Acquire(ctx, key)
			if err != nil {
				t.Error(err)
			}
			acquired <- l
		}()
	}
	waitFor(t, 5*time.Second, "all waiters in the queue", func() bool {
		return queued(t, rdb, renewlock.DefaultKeyPrefix+key) == n
	})
	before := scriptCalls(t, rdb)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	first := <-acquired
	time.Sleep(200 * time.Millisecond) // a herd would still be retrying
	// The release script is the whole hand-off; a herd would add n-1.
	if calls := scriptCalls(t, rdb) - before; calls > 1 {
		t.Fatalf("%d script calls for one hand-off to %d queued waiters: a herd", calls, n)
	}
	// The rest get it one after the other, each woken by a release.
	next := first
	for i := 1; i < n; i++ {
		if err := next.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case next = <-acquired:
		case <-time.After(5 * time.Second): // the TTL is 10 s
			t.Fatalf("waiter %d of %d not woken by a release", i+1, n)
		}
	}
	if err := next.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// All waits of one client share one subscription connection.
func TestOneSubscriptionConnectionPerClient(t *testing.T) {
	srv, rdb, holder := setup(t)
	waiters := newClient(t, srv.Client())
	ctx := ctxT(t, 30*time.Second)
	const n = 20
	var held []*renewlock.Lock
	for i := 0; i < n; i++ {
		l, err := holder.Acquire(ctx, fmt.Sprintf("%s-%d", uniqueKey(t), i))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	var wg sync.WaitGroup
	for _, l := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l2, err := waiters.Acquire(ctx, l.Key())
			if err != nil {
				t.Error(err)
				return
			}
			_ = l2.Release(ctx)
		}()
	}
	waitFor(t, 5*time.Second, "all subscriptions", func() bool {
		for _, l := range held {
			if queued(t, rdb, renewlock.DefaultKeyPrefix+l.Key()) != 1 {
				return false
			}
		}
		return true
	})
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	subConns := 0
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if strings.Contains(line, " sub=") && !strings.Contains(line, " sub=0 ") {
			subConns++
		}
	}
	if subConns != 1 {
		t.Fatalf("%d subscription connections for %d waits; want 1:\n%s", subConns, n, list)
	}
	for _, l := range held {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// A holder that crashed never publishes: the waiter takes over when the
// lease expires, through its fallback timer.
func TestWaitTakesOverFromCrashedHolder(t *testing.T) {
	const ttl = 500 * time.Millisecond
	srv, _, waiter := setup(t)
	crashed := newClient(t, srv.Client(), renewlock.WithTTL(ttl))
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := crashed.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	crash(t, crashed)
	start := time.Now()
	l2, err := waiter.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("took over %v after the crash (TTL %v)", d, ttl)
	if d > ttl+time.Second {
		t.Fatalf("takeover took %v, lease was %v", d, ttl)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l.Token())
	}
	_ = l2.Release(ctx)
}

// Cancelling ctx stops a blocked Acquire at once, with ctx's error (not
// ErrNotAcquired), and leaves nothing behind in Redis.
func TestAcquireHonoursContext(t *testing.T) {
	_, rdb, c := setup(t)
	key := uniqueKey(t)
	l, err := c.Acquire(ctxT(t, 5*time.Second), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := c.Acquire(ctx, key); errc <- err }()
		waitFor(t, 5*time.Second, "subscription", func() bool {
			return queued(t, rdb, renewlock.DefaultKeyPrefix+key) == 1
		})
		cancel()
		cancelled := time.Now()
		err := <-errc
		if d := time.Since(cancelled); d > 500*time.Millisecond {
			t.Fatalf("Acquire returned %v after cancel", d)
		}
		if !errors.Is(err, context.Canceled) || errors.Is(err, renewlock.ErrNotAcquired) {
			t.Fatalf("err = %v, want context.Canceled and not ErrNotAcquired", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := c.Acquire(ctx, key)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		// The waiters above left the queue in the background.
		waitFor(t, 5*time.Second, "the queue to empty", func() bool {
			return queued(t, rdb, renewlock.DefaultKeyPrefix+key) == 0
		})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		before := scriptCalls(t, rdb)
		if _, err := c.Acquire(ctx, uniqueKey(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if _, err := c.TryAcquire(ctx, uniqueKey(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("TryAcquire err = %v, want context.Canceled", err)
		}
		if n := scriptCalls(t, rdb) - before; n != 0 {
			t.Fatalf("%d Redis calls with a cancelled context", n)
		}
	})
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if keys := rdb.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Fatalf("keys left behind: %q", keys)
	}
}

// A grant is about one entry of the waiter in the queue. When that entry
// is lost (the holder's lease ends and Redis drops the key, queue and all)
// and the waiter queues again, with the same id, behind a new holder, a
// grant of the old entry that arrives late (a pub/sub message or a
// release's reply held up on a slow link) must not hand out the lock: in
// the chaos suite's latency-jitter scenario holders overlapped by up to
// 330 ms that way, until the waiter's next renewal found it was not the
// owner.
func TestLateGrantOfALostQueueEntry(t *testing.T) {
	opts := []renewlock.Option{renewlock.WithTTL(time.Second)}
	srv, rdb, first := setup(t, opts...)
	second := newClient(t, srv.Client(), opts...)
	waiter := newClient(t, srv.Client(), opts...)
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	rkey := renewlock.DefaultKeyPrefix + key
	if _, err := first.Acquire(ctx, key); err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   *renewlock.Lock
		err error
		at  time.Time
	}
	got := make(chan result, 1)
	go func() {
		l, err := waiter.Acquire(ctx, key)
		got <- result{l, err, time.Now()}
	}()
	waitFor(t, 5*time.Second, "the waiter in the queue", func() bool { return queued(t, rdb, rkey) == 1 })
	ids := renewlock.WaitingIDsForTest(waiter, rkey)
	if len(ids) != 1 {
		t.Fatalf("waiting ids %v", ids)
	}
	// The queue is lost with the key, and another client takes the lock
	// before the waiter's next renewal (a third of the TTL) finds out.
	if err := rdb.Del(ctx, rkey).Err(); err != nil {
		t.Fatal(err)
	}
	l2, err := second.TryAcquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the waiter queued again", func() bool { return queued(t, rdb, rkey) == 1 })
	// The old entry's grant, late.
	renewlock.GrantForTest(waiter, ids[0], l2.Token()-1)
	select {
	case r := <-got:
		if r.err == nil {
			t.Fatalf("a late grant of a lost queue entry handed out the lock (token %d) while another client holds it (token %d)", r.l.Token(), l2.Token())
		}
		t.Fatalf("Acquire failed: %v", r.err)
	case <-time.After(600 * time.Millisecond): // still waiting, as it should
	}
	released := time.Now()
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.at.Before(released) || r.l.Token() <= l2.Token() {
		t.Fatalf("the waiter got token %d at %v; the other holder had %d until %v", r.l.Token(), r.at, l2.Token(), released)
	}
	if err := r.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
