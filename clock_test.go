//go:build linux

package renewlock_test

// The single primary's "clock offset" column of GUARANTEES.md, on a real
// redis-server whose wall clock is moved by internal/clockshim (an
// LD_PRELOAD shim; the host's clock does not move): a server clock far
// ahead of or behind the clients', and a server clock stepped forward or
// backward while a lock is held or after it was released.

import (
	"errors"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/clockshim"
	"github.com/renewlock/renewlock/internal/redistest"
)

// newClock returns a clock at offset from the host's, closed when t ends.
func newClock(t *testing.T, offset time.Duration) *clockshim.Clock {
	t.Helper()
	clk, err := clockshim.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = clk.Close() })
	if err := clk.Set(offset); err != nil {
		t.Fatal(err)
	}
	return clk
}

// startWithClock starts a redis-server whose wall clock is clk's, at
// offset.
func startWithClock(t *testing.T, offset time.Duration) (*redistest.Server, *clockshim.Clock) {
	t.Helper()
	clk := newClock(t, offset)
	return redistest.StartEnv(t, clk.Env()), clk
}

// GUARANTEES.md: single primary × clock offset. A server clock an hour
// ahead of or behind the clients' changes nothing: leases are durations
// (the holder's deadline is its own monotonic clock), tokens come from the
// server's clock and only have to rise. Held through renewals, handed to a
// waiter, released, expired after a crash and re-taken, the lock excludes
// and its tokens rise; with Redis frozen, the holder is told before the
// key could expire.
func TestServerClockOffsetDoesNotMatter(t *testing.T) {
	for _, offset := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(offset.String(), func(t *testing.T) {
			const ttl, interval = time.Second, 250 * time.Millisecond
			opts := []renewlock.Option{renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval), renewlock.WithSafetyMargin(30 * time.Millisecond)}
			srv, _ := startWithClock(t, offset)
			rdb := srv.Client()
			a, b := newClient(t, srv.Client(), opts...), newClient(t, srv.Client(), opts...)
			ctx := ctxT(t, 30*time.Second)
			key := uniqueKey(t)
			var last uint64
			check := func(what string, l *renewlock.Lock) {
				t.Helper()
				if l.Token() <= last {
					t.Fatalf("%s: token %d not above %d", what, l.Token(), last)
				}
				last = l.Token()
			}
			take := func(what string, c *renewlock.Client) *renewlock.Lock {
				t.Helper()
				l, err := c.Acquire(ctx, key)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				check(what, l)
				return l
			}

			la := take("first", a)
			got := make(chan *renewlock.Lock, 1)
			go func() {
				l, err := b.Acquire(ctx, key)
				if err != nil {
					t.Error(err)
				}
				got <- l
			}()
			if closedWithin(la.Done(), 3*ttl) {
				t.Fatalf("lease lost within 3 TTLs: %v", la.Err())
			}
			select {
			case <-got:
				t.Fatal("a waiter got a lock that is held")
			default:
			}
			if err := la.Release(ctx); err != nil {
				t.Fatal(err)
			}
			lb := <-got
			if lb == nil {
				return
			}
			check("handed to a waiter", lb)
			if err := lb.Release(ctx); err != nil {
				t.Fatal(err)
			}
			lc := take("after a release", a)

			// A holder that crashes: its key expires on the server's clock.
			crashed := newClient(t, srv.Client(), opts...)
			if err := lc.Release(ctx); err != nil {
				t.Fatal(err)
			}
			take("before a crash", crashed)
			crash(t, crashed)
			start := time.Now()
			le := take("after the crashed holder's lease expired", b)
			if waited := time.Since(start); waited > ttl+200*time.Millisecond {
				t.Errorf("the crashed holder's key expired only after %v (TTL %v)", waited, ttl)
			}

			// Redis frozen: told before the key could expire.
			expiry := justRenewed(t, ctx, rdb, renewlock.DefaultKeyPrefix+key)
			srv.Pause()
			defer srv.Resume()
			if !closedWithin(le.Done(), 2*ttl) {
				t.Fatal("loss not signalled with Redis frozen")
			}
			lead := time.Until(expiry)
			t.Logf("server clock %v: tokens rose through hand-off, release and expiry; frozen Redis: told %v before the key could expire", offset, lead.Round(time.Millisecond))
			if lead <= 0 {
				t.Errorf("told %v after the key could expire", -lead)
			}
			if !errors.Is(le.Err(), renewlock.ErrLeaseLost) {
				t.Fatalf("Err = %v", le.Err())
			}
		})
	}
}

// GUARANTEES.md: single primary × clock offset. A step of the server's
// clock forward by Δ ends every lease there Δ early. A holder that keeps
// renewing absorbs a step smaller than the slack between renewals (TTL −
// renew interval): nobody else ever gets the key.
func TestServerClockStepForwardWithinRenewalSlack(t *testing.T) {
	// Slack TTL − interval = 750 ms: a step of 300 ms leaves a renewal
	// 450 ms to be late on a loaded machine.
	const ttl, interval, step = time.Second, 250 * time.Millisecond, 300 * time.Millisecond
	srv, clk := startWithClock(t, 0)
	opts := []renewlock.Option{renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval)}
	a, b := newClient(t, srv.Client(), opts...), newClient(t, srv.Client(), opts...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	taken := make(chan *renewlock.Lock, 1)
	go func() { // another client trying all the time
		for {
			select {
			case <-stop:
				taken <- nil
				return
			default:
			}
			if l, err := b.TryAcquire(ctx, key); err == nil {
				taken <- l
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for i := range 5 {
		time.Sleep(time.Duration(int64(i)*37%interval.Milliseconds()) * time.Millisecond) // steps at different phases of the renewal cycle
		if _, err := clk.Step(step); err != nil {
			t.Fatal(err)
		}
		if closedWithin(la.Done(), ttl) {
			t.Fatalf("step %d of %v forward: lease lost: %v", i+1, step, la.Err())
		}
	}
	close(stop)
	if l := <-taken; l != nil {
		t.Fatalf("another client took the key (token %d) while it was held", l.Token())
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("5 steps of %v forward (slack TTL − interval = %v): lease kept, key never free", step, ttl-interval)
}

// GUARANTEES.md: single primary × clock offset — the limit. A step
// forward larger than what is left of the lease expires it at once: another
// client takes the key while the holder, which measures its lease on its own
// clock, still believes it holds it, until its next renewal finds the key
// gone or another owner's. The newcomer's token is larger (the server clock
// went forward), so a fenced resource refuses the old holder.
func TestLimitServerClockStepForwardEndsLeasesEarly(t *testing.T) {
	// The next renewal comes 500 ms after the step: time enough for the
	// newcomer on a loaded machine.
	const ttl, interval, step = time.Second, 500 * time.Millisecond, 2 * time.Second
	srv, clk := startWithClock(t, 0)
	rdb := srv.Client()
	opts := []renewlock.Option{renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval)}
	a, b := newClient(t, srv.Client(), opts...), newClient(t, srv.Client(), opts...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	justRenewed(t, ctx, rdb, renewlock.DefaultKeyPrefix+key)
	if _, err := clk.Step(step); err != nil {
		t.Fatal(err)
	}
	stepped := time.Now()
	var lb *renewlock.Lock
	for lb == nil {
		if l, err := b.TryAcquire(ctx, key); err == nil {
			lb = l
		} else if !errors.Is(err, renewlock.ErrNotAcquired) {
			t.Fatal(err)
		}
	}
	bAt := time.Now()
	select {
	case <-la.Done():
		t.Fatalf("the holder was told before the newcomer got the key: the hole this test shows is closed (%v)", la.Err())
	default:
	}
	if !closedWithin(la.Done(), interval+200*time.Millisecond) {
		t.Fatal("the old holder was not told at its next renewal")
	}
	told := time.Now()
	if !errors.Is(la.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("Err = %v", la.Err())
	}
	t.Logf("step of %v forward: the key was free %v after the step; the old holder was told %v after the newcomer got it (both valid)",
		step, bAt.Sub(stepped).Round(time.Millisecond), told.Sub(bAt).Round(time.Millisecond))
	if lb.Token() <= la.Token() {
		t.Fatalf("the newcomer's token %d is not above the old holder's %d", lb.Token(), la.Token())
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// GUARANTEES.md: single primary × clock offset. A step backward while the
// lock is held or handed on cannot lower a token: the next token comes from
// the stored one, and a release keeps it as a tombstone until the server's
// clock has passed it.
func TestServerClockStepBackwardWhileHeld(t *testing.T) {
	srv, clk := startWithClock(t, 0)
	rdb := srv.Client()
	a, b := newClient(t, srv.Client()), newClient(t, srv.Client())
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clk.Step(-time.Hour); err != nil {
		t.Fatal(err)
	}
	got := make(chan *renewlock.Lock, 1)
	go func() {
		l, err := b.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitFor(t, 5*time.Second, "the waiter in the queue", func() bool { return queued(t, rdb, renewlock.DefaultKeyPrefix+key) == 1 })
	if err := la.Release(ctx); err != nil { // handed to b
		t.Fatal(err)
	}
	lb := <-got
	if lb == nil {
		return
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("hand-off after a step back: token %d after %d", lb.Token(), la.Token())
	}
	if err := lb.Release(ctx); err != nil { // nobody waits: the key goes, its token stays
		t.Fatal(err)
	}
	pttl := rdb.PTTL(ctx, renewlock.DefaultKeyPrefix+key).Val()
	lc, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if lc.Token() <= lb.Token() {
		t.Fatalf("after a release with the clock an hour back: token %d after %d", lc.Token(), lb.Token())
	}
	t.Logf("clock an hour back while held: tokens %d → %d → %d; the released key's token was kept for %v", la.Token(), lb.Token(), lc.Token(), pttl.Round(time.Second))
	if pttl < 59*time.Minute {
		t.Errorf("the tombstone lives %v, less than the hour the token is ahead of the clock", pttl)
	}
	if err := lc.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// GUARANTEES.md: single primary × clock offset — the limit. Once a key is
// gone (released with its token behind the clock, or expired), the next
// token is the server's clock: stepped back by more than the time since
// the last acquisition, it issues a token below the last one, and a fenced
// resource refuses the new holder until the clock has caught up — while an
// old holder, paused past its lease, would still be accepted.
func TestLimitServerClockStepBackwardAfterRelease(t *testing.T) {
	srv, clk := startWithClock(t, 0)
	c := newClient(t, srv.Client())
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	la, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := clk.Step(-time.Minute); err != nil {
		t.Fatal(err)
	}
	lb, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release(ctx)
	back := time.Duration(la.Token()-lb.Token()) * time.Microsecond
	t.Logf("released, then the server clock stepped back a minute: token %d after %d (%v lower)", lb.Token(), la.Token(), back.Round(time.Second))
	if lb.Token() >= la.Token() {
		t.Fatalf("token %d after %d: the hole this test shows is closed", lb.Token(), la.Token())
	}
}
