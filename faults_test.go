package renewlock_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// faultHook makes a go-redis client fail pipelines (renewals travel in
// pipelines) while failing is set, the way a flaky network would.
type faultHook struct{ failing atomic.Bool }

var errInjected = errors.New("injected network fault")

func (*faultHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.failing.Load() {
			for _, c := range cmds {
				c.SetErr(errInjected)
			}
			return errInjected
		}
		return next(ctx, cmds)
	}
}

// Transient renewal errors are retried: a lock survives an outage shorter
// than its validity, and is declared lost at the deadline of a longer one —
// never silently kept, never given up early.
func TestTransientRenewalErrors(t *testing.T) {
	const ttl, interval = 900 * time.Millisecond, 150 * time.Millisecond
	srv, _, _ := setup(t)
	rdb := srv.Client()
	hook := &faultHook{}
	rdb.AddHook(hook)
	c := newClient(t, rdb, renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval))
	ctx := ctxT(t, 10*time.Second)

	l, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	// An outage of two intervals: renewals fail, are retried, and succeed.
	hook.failing.Store(true)
	time.Sleep(2 * interval)
	hook.failing.Store(false)
	if closedWithin(l.Done(), 2*ttl) {
		t.Fatalf("lock lost after a short outage: %v", l.Err())
	}

	// A longer outage: lost at the deadline, with the cause.
	hook.failing.Store(true)
	start := time.Now()
	if !closedWithin(l.Done(), 3*ttl) {
		t.Fatal("lease loss never signalled during a long outage")
	}
	if d := time.Since(start); d > ttl {
		t.Fatalf("loss signalled %v into the outage, after the %v lease could have expired", d, ttl)
	}
	if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("Err = %v", l.Err())
	}
	hook.failing.Store(false)
	if err := l.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Release = %v, want ErrLeaseLost", err)
	}
}

// releaseOnHeldHook runs release once, right after the first acquire attempt
// that found the key held returns — before the waiter can subscribe. A
// waiter that subscribed only after its last attempt would miss that
// release and sleep for the holder's whole TTL.
type releaseOnHeldHook struct {
	once    sync.Once
	release func()
}

func (*releaseOnHeldHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *releaseOnHeldHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(cmd)
		return err
	}
}

// Attempts travel alone or in pipelines, depending on concurrency and ctx.
func (h *releaseOnHeldHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			h.check(cmd)
		}
		return err
	}
}

func (h *releaseOnHeldHook) check(cmd redis.Cmder) {
	if c, ok := cmd.(*redis.Cmd); ok && c.Err() == nil && (cmd.Name() == "evalsha" || cmd.Name() == "eval") {
		if v, ok := c.Val().([]any); ok && len(v) == 2 && v[0] == int64(0) {
			h.once.Do(h.release)
		}
	}
}

func TestReleaseBetweenAttemptAndSubscribeIsNotMissed(t *testing.T) {
	srv, _, holder := setup(t) // default TTL: 10 s
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 20; i++ {
		key := uniqueKey(t)
		l, err := holder.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		rdb := srv.Client()
		rdb.AddHook(&releaseOnHeldHook{release: func() {
			if err := l.Release(ctx); err != nil {
				t.Error(err)
			}
		}})
		waiter := newClient(t, rdb)
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		l2, err := waiter.Acquire(actx, key)
		cancel()
		if err != nil {
			t.Fatalf("round %d: waiter missed a release that came right after its attempt: %v", i, err)
		}
		_ = l2.Release(ctx)
		_ = waiter.Close()
	}
}

// After Redis restarts empty, a waiter does not sleep out the old holder's
// TTL: its subscription is restored on a new connection, which wakes it to
// try at once; the old holder hears at its next renewal that it lost the lock.
func TestRestartWakesWaitersAndTellsHolder(t *testing.T) {
	const interval = 200 * time.Millisecond
	srv, _, holder := setup(t, renewlock.WithRenewInterval(interval)) // TTL 10 s
	waiter := newClient(t, srv.Client())
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	l, err := holder.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *renewlock.Lock, 1)
	go func() {
		l2, err := waiter.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	probe := srv.Client()
	waitFor(t, 5*time.Second, "the waiter's subscription", func() bool {
		return queued(t, probe, renewlock.DefaultKeyPrefix+key) == 1
	})
	srv.Restart()
	restarted := time.Now()
	var l2 *renewlock.Lock
	select {
	case l2 = <-got:
	case <-time.After(5 * time.Second): // the old lease had ~10 s left
		t.Fatal("waiter still asleep 5 s after Redis restarted empty")
	}
	t.Logf("waiter acquired %v after the restart", time.Since(restarted))
	if l2 == nil {
		t.FailNow()
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token after restart %d, before %d", l2.Token(), l.Token())
	}
	if !closedWithin(l.Done(), 2*time.Second) || !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("old holder not told of the loss: %v", l.Err())
	}
	_ = l2.Release(ctx)
}

// A Release that Redis does not answer does not hold Done open: the holder
// is told at the validity deadline, as renewal would have told it, and the
// Release reports the loss when it returns.
func TestReleaseBlockedPastDeadline(t *testing.T) {
	const ttl = 600 * time.Millisecond
	srv, _, c := setup(t, renewlock.WithTTL(ttl))
	l, err := c.Acquire(ctxT(t, 5*time.Second), uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	acquired := time.Now()
	srv.Pause()
	released := make(chan error, 1)
	go func() { released <- l.Release(context.Background()) }()
	if !closedWithin(l.Done(), 5*time.Second) {
		t.Fatal("Done not closed while Release was blocked")
	}
	if d := time.Since(acquired); d > ttl {
		t.Fatalf("Done closed %v after acquisition, past the %v lease", d, ttl)
	}
	if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("Err = %v, want ErrLeaseLost", l.Err())
	}
	srv.Resume()
	if err := <-released; !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Release = %v, want ErrLeaseLost", err)
	}
}
