package renewlock_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
)

// At most one leader at a time across clients; terms strictly increase;
// candidates take turns in order.
func TestElectionOneLeader(t *testing.T) {
	srv, _, c1 := setup(t, renewlock.WithTTL(time.Second))
	c2 := newClient(t, srv.Client(), renewlock.WithTTL(time.Second))
	ctx := ctxT(t, time.Minute)
	name := uniqueKey(t)
	var leaders atomic.Int32
	var tl tokenLog
	terms := make([]atomic.Int64, 6)
	stop := time.Now().Add(1200 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range 6 {
		c := c1
		if w%2 == 1 {
			c = c2
		}
		wg.Go(func() {
			for time.Now().Before(stop) {
				floor := tl.begin()
				err := c.Lead(ctx, name, "candidate", func(ctx context.Context, l *renewlock.Leadership) error {
					if err := tl.got(l.Term(), floor); err != nil {
						t.Errorf("term %d: %v", l.Term(), err)
					}
					if leaders.Add(1) != 1 {
						t.Error("two leaders at once")
					}
					time.Sleep(time.Millisecond)
					leaders.Add(-1)
					terms[w].Add(1)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range terms {
		if terms[w].Load() == 0 {
			t.Fatalf("candidate %d never led", w)
		}
	}
}

// Leader reports the current leader; Observe delivers the current leader
// and every change — a new term by resignation (event-driven, at once), no
// leader, and the end of a crashed leader's lease.
func TestElectionLeaderAndObserve(t *testing.T) {
	const ttl = 500 * time.Millisecond
	srv, rdb, c := setup(t, renewlock.WithTTL(ttl))
	watcher := newClient(t, srv.Client())
	ctx := ctxT(t, 20*time.Second)
	name := uniqueKey(t)
	if _, err := watcher.Leader(ctx, name); !errors.Is(err, renewlock.ErrNoLeader) {
		t.Fatalf("Leader of a new election: %v, want ErrNoLeader", err)
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	changes := watcher.Observe(octx, name)
	next := func(what string) renewlock.Leader {
		t.Helper()
		select {
		case ld, ok := <-changes:
			if !ok {
				t.Fatalf("%s: Observe closed", what)
			}
			return ld
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no change observed", what)
		}
		return renewlock.Leader{}
	}
	if ld := next("first"); ld != (renewlock.Leader{}) {
		t.Fatalf("first observed leader %+v, want none", ld)
	}
	a, err := c.Campaign(ctx, name, "a:1")
	if err != nil {
		t.Fatal(err)
	}
	if ld := next("a elected"); ld.Value != "a:1" || ld.Term != a.Term() {
		t.Fatalf("observed %+v, want a with term %d", ld, a.Term())
	}
	if ld, err := watcher.Leader(ctx, name); err != nil || ld.Value != "a:1" || ld.Term != a.Term() || ld.Holder == "" {
		t.Fatalf("Leader = %+v, %v", ld, err)
	}
	// b waits in the queue; a resigns; b leads at once.
	bc := make(chan *renewlock.Leadership, 1)
	go func() {
		b, err := c.Campaign(ctx, name, "b:2")
		if err != nil {
			t.Error(err)
		}
		bc <- b
	}()
	// In Redis's queue, not just waiting in c: b's first attempt may still
	// be waiting for c's grant subscription, and a resignation then leaves
	// the election without a leader for a moment (observed as such).
	waitFor(t, 5*time.Second, "b in the queue", func() bool {
		return queued(t, rdb, renewlock.DefaultKeyPrefix+name) == 1
	})
	resigned := time.Now()
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ld := next("b elected")
	if d := time.Since(resigned); d > time.Second {
		t.Fatalf("observed the new leader %v after the resignation: not event-driven", d)
	}
	b := <-bc
	if ld.Value != "b:2" || ld.Term != b.Term() || b.Term() <= a.Term() {
		t.Fatalf("observed %+v; b's term %d, a's %d", ld, b.Term(), a.Term())
	}
	// b resigns with nobody waiting: no leader.
	if err := b.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if ld := next("no leader"); ld != (renewlock.Leader{}) {
		t.Fatalf("observed %+v after the last resignation, want none", ld)
	}
	// A leader that crashes: observed gone when its lease ends.
	crashed := newClient(t, srv.Client(), renewlock.WithTTL(ttl))
	d, err := crashed.Campaign(ctx, name, "d:4")
	if err != nil {
		t.Fatal(err)
	}
	if ld := next("d elected"); ld.Term != d.Term() {
		t.Fatalf("observed %+v, want d", ld)
	}
	crash(t, crashed)
	start := time.Now()
	if ld := next("d's lease ended"); ld != (renewlock.Leader{}) {
		t.Fatalf("observed %+v after the leader crashed, want none", ld)
	}
	if dt := time.Since(start); dt > ttl+time.Second {
		t.Fatalf("the crash was observed %v later (TTL %v)", dt, ttl)
	}
	ocancel()
	select {
	case _, ok := <-changes:
		if ok {
			for range changes {
			}
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Observe not closed after its ctx ended")
	}
}

// A name is one kind of lock; a Campaign that gives up leaves the queue.
func TestElectionErrors(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	name := uniqueKey(t)
	m, err := c.TryAcquire(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Campaign(ctx, name, "x"); !errors.Is(err, renewlock.ErrRejected) {
		t.Fatalf("Campaign on a mutex's name: %v, want ErrRejected", err)
	}
	if _, err := c.Leader(ctx, name); !errors.Is(err, renewlock.ErrRejected) {
		t.Fatalf("Leader of a mutex's name: %v, want ErrRejected", err)
	}
	_ = m.Release(ctx)
	l, err := c.Campaign(ctx, name, "x")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.Campaign(short, name, "y"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign with a short ctx: %v", err)
	}
	if err := c.Lead(ctx, name, "z", nil); !errors.Is(err, renewlock.ErrInvalidArgument) {
		t.Fatalf("Lead(nil fn): %v", err)
	}
	// The candidate that gave up leaves the queue in the background.
	waitFor(t, 5*time.Second, "the queue to empty", func() bool {
		info, err := c.Inspect(ctx, name)
		return err == nil && info.Waiters == 0
	})
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leader(ctx, name); !errors.Is(err, renewlock.ErrNoLeader) {
		t.Fatalf("after the only leader resigned: %v, want ErrNoLeader (the candidate that gave up left the queue)", err)
	}
}
