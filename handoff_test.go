package renewlock_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
)

// A release with a waiter in the same client passes the lock straight to it
// in one script call: new owner, new token, a lease that then renews.
func TestLocalHandOff(t *testing.T) {
	const ttl = 300 * time.Millisecond
	_, rdb, c := setup(t, renewlock.WithTTL(ttl))
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	rkey := renewlock.DefaultKeyPrefix + key
	// Warm up: load the scripts, subscribe the grant channel.
	warm, err := c.Acquire(ctx, key+"/warm-up")
	if err != nil {
		t.Fatal(err)
	}
	if err := warm.Release(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *renewlock.Lock, 1)
	go func() {
		l, err := c.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitFor(t, 5*time.Second, "the waiter in the queue", func() bool { return queued(t, rdb, rkey) == 1 })
	before := scriptCalls(t, rdb)
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	second := <-got
	if second == nil {
		t.FailNow()
	}
	if n := scriptCalls(t, rdb) - before; n != 1 {
		t.Fatalf("hand-off took %d script calls, want 1", n)
	}
	if second.Token() <= first.Token() {
		t.Fatalf("token %d after %d", second.Token(), first.Token())
	}
	if o := rdb.HGet(ctx, rkey, "o").Val(); o == "" {
		t.Fatal("no owner in Redis after the hand-off")
	}
	if closedWithin(second.Done(), 3*ttl) {
		t.Fatalf("handed-off lock not renewed: %v", second.Err())
	}
	if !errors.Is(first.Err(), renewlock.ErrReleased) {
		t.Fatalf("first lock: Err = %v", first.Err())
	}
	if err := second.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if rdb.HExists(ctx, rkey, "o").Val() {
		t.Fatal("lock still held after the last release")
	}
}

// Under contention from two clients every goroutine gets its turn: none is
// starved, whatever client it is in, and exclusion holds throughout.
func TestContentionIsFair(t *testing.T) {
	srv, _, c1 := setup(t)
	c2 := newClient(t, srv.Client())
	ctx := ctxT(t, time.Minute)
	key := uniqueKey(t)
	const perClient = 4
	counts := make([]atomic.Int64, 2*perClient)
	var inside atomic.Int32
	var lastToken atomic.Uint64
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for ci, c := range []*renewlock.Client{c1, c2} {
		for g := 0; g < perClient; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					l, err := c.Acquire(ctx, key)
					if err != nil {
						t.Error(err)
						return
					}
					if inside.Add(1) != 1 {
						t.Error("two holders at once")
					}
					if tok := l.Token(); tok <= lastToken.Load() {
						t.Errorf("token %d after %d", tok, lastToken.Load())
					} else {
						lastToken.Store(tok)
					}
					counts[ci*perClient+g].Add(1)
					inside.Add(-1)
					if err := l.Release(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	var total, lo, hi int64 = 0, 1 << 62, 0
	for i := range counts {
		n := counts[i].Load()
		total += n
		lo, hi = min(lo, n), max(hi, n)
	}
	t.Logf("%d acquisitions; per goroutine min %d max %d", total, lo, hi)
	if mean := total / int64(len(counts)); lo < mean/3 {
		t.Fatalf("a goroutine was starved: %d acquisitions against a mean of %d", lo, mean)
	}
}

// A release right after a new waiter joined the queue — before the
// waiter's goroutine has read the reply that says so — must not strand the
// waiter: the grant that overtakes that reply is kept for it, and it gets
// the lock at once, not after the old holder's TTL.
func TestHandOffRightAfterQueueing(t *testing.T) {
	_, rdb, c := setup(t) // TTL 10 s: a lost wake-up would stall 3–10 s
	ctx := ctxT(t, time.Minute)
	key := uniqueKey(t)
	rkey := renewlock.DefaultKeyPrefix + key
	for i := 0; i < 150; i++ {
		l, err := c.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *renewlock.Lock, 1)
		go func() {
			l2, err := c.Acquire(ctx, key)
			if err != nil {
				t.Error(err)
			}
			got <- l2
		}()
		for rdb.HGet(ctx, rkey, "qn").Val() == "" {
			time.Sleep(20 * time.Microsecond)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case l2 := <-got:
			if err := l2.Release(ctx); err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("round %d: waiter stranded after a release", i)
		}
	}
}
