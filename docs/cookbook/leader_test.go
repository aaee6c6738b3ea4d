package cookbook_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/docs/cookbook"
)

// Three replicas: one leads at a time; a replica that shuts down hands over
// at once; a leader whose lease is taken away stops its work and queues
// again; tokens go up with every new term.
func TestLead(t *testing.T) {
	type term struct {
		replica int
		token   uint64
	}
	var (
		leaders atomic.Int32
		forced  atomic.Bool // a lease was taken away: the old leader may overlap until its next renewal
		mu      sync.Mutex
		terms   []term
	)
	terms_ := func() []term { mu.Lock(); defer mu.Unlock(); return append([]term(nil), terms...) }
	work := func(replica int) func(ctx context.Context, token uint64) error {
		return func(ctx context.Context, token uint64) error {
			if n := leaders.Add(1); n != 1 && !forced.Load() {
				t.Errorf("%d leaders at once", n)
			}
			mu.Lock()
			terms = append(terms, term{replica, token})
			mu.Unlock()
			<-ctx.Done()
			leaders.Add(-1)
			return nil
		}
	}
	cancels := make([]context.CancelFunc, 3)
	var wg sync.WaitGroup
	for i := range cancels {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		replica := newClient(t, renewlock.WithTTL(time.Second))
		wg.Go(func() {
			if err := cookbook.Lead(ctx, replica, t.Name(), work(i)); err != nil {
				t.Error(err)
			}
		})
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	}()
	waitFor := func(what string, cond func([]term) bool) []term {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if ts := terms_(); cond(ts) {
				return ts
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: terms %v", what, terms_())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	ts := waitFor("a leader", func(ts []term) bool { return len(ts) == 1 })

	// The leader shuts down: the next in line leads well within a TTL.
	stopped := time.Now()
	cancels[ts[0].replica]()
	waitFor("a second leader", func(ts []term) bool { return len(ts) == 2 })
	if d := time.Since(stopped); d > 500*time.Millisecond {
		t.Errorf("hand-over took %v", d)
	}

	// An operator takes the lease away: the next in line leads at once,
	// and the old leader, told at its next renewal, stops and queues again
	// (until then two leaders run: only fencing tokens protect the
	// resource in that window).
	forced.Store(true)
	ops := newClient(t)
	if _, err := ops.ForceRelease(context.Background(), t.Name()); err != nil {
		t.Fatal(err)
	}
	ts = waitFor("a third term", func(ts []term) bool { return len(ts) == 3 })
	deadline := time.Now().Add(2 * time.Second) // a renew interval is TTL/3
	for leaders.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d leaders after the forced release", leaders.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1; i < len(ts); i++ {
		if ts[i].token <= ts[i-1].token || ts[i].replica == ts[0].replica {
			t.Errorf("terms %v", ts)
		}
	}
}
