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

// tokenLog checks that every lease's token is larger than the token of
// every lease whose acquisition had returned before it was asked for.
type tokenLog struct {
	mu   sync.Mutex
	done uint64 // the largest token returned so far
	seen map[uint64]bool
}

// begin returns the largest token returned before an acquisition starts.
func (tl *tokenLog) begin() uint64 {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.done
}

// got records token, returned by an acquisition that began when floor was
// the largest; it returns an error if the token is not above floor or not
// unique.
func (tl *tokenLog) got(token, floor uint64) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.seen == nil {
		tl.seen = map[uint64]bool{}
	}
	if tl.seen[token] {
		return errors.New("token issued twice")
	}
	tl.seen[token] = true
	if token <= floor {
		return errors.New("token not above an earlier one")
	}
	tl.done = max(tl.done, token)
	return nil
}

// At most limit permits are held at once, across clients; every permit's
// token is above every token issued before; waiting is fair.
func TestSemaphoreLimit(t *testing.T) {
	srv, _, c1 := setup(t, renewlock.WithTTL(time.Second))
	c2 := newClient(t, srv.Client(), renewlock.WithTTL(time.Second))
	ctx := ctxT(t, time.Minute)
	name := uniqueKey(t)
	const limit, workers = 3, 10
	var inside, most atomic.Int32
	var tl tokenLog
	counts := make([]atomic.Int64, workers)
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range workers {
		c := c1
		if w%2 == 1 {
			c = c2
		}
		wg.Go(func() {
			for time.Now().Before(stop) {
				floor := tl.begin()
				l, err := c.AcquirePermit(ctx, name, limit)
				if err != nil {
					t.Error(err)
					return
				}
				if err := tl.got(l.Token(), floor); err != nil {
					t.Errorf("permit token %d: %v", l.Token(), err)
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				counts[w].Add(1)
				if err := l.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > limit {
		t.Fatalf("%d permits held at once, limit %d", m, limit)
	} else if m < limit {
		t.Fatalf("at most %d permits held at once: the limit %d was never reached", m, limit)
	}
	lo, hi := counts[0].Load(), counts[0].Load()
	for i := range counts {
		lo, hi = min(lo, counts[i].Load()), max(hi, counts[i].Load())
	}
	t.Logf("permits per worker: min %d max %d", lo, hi)
	if lo == 0 || float64(hi)/float64(lo) > 1.5 {
		t.Fatalf("unfair: min %d max %d permits per worker", lo, hi)
	}
}

func TestSemaphoreErrors(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	name := uniqueKey(t)
	for _, bad := range []int{0, -1, renewlock.MaxPermits + 1} {
		if _, err := c.AcquirePermit(ctx, name, bad); !errors.Is(err, renewlock.ErrInvalidArgument) {
			t.Fatalf("limit %d: %v, want ErrInvalidArgument", bad, err)
		}
	}
	p1, err := c.TryAcquirePermit(ctx, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.TryAcquirePermit(ctx, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquirePermit(ctx, name, 2); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("third permit of 2: %v, want ErrNotAcquired", err)
	}
	if _, err := c.TryAcquirePermit(ctx, name, 5); !errors.Is(err, renewlock.ErrInvalidArgument) || !errors.Is(err, renewlock.ErrRejected) {
		t.Fatalf("another limit: %v, want ErrInvalidArgument", err)
	}
	if _, err := c.TryAcquire(ctx, name); !errors.Is(err, renewlock.ErrRejected) {
		t.Fatalf("a mutex on a semaphore's name: %v, want ErrRejected", err)
	}
	if _, err := c.TryAcquireRead(ctx, name); !errors.Is(err, renewlock.ErrRejected) {
		t.Fatalf("a read lock on a semaphore's name: %v, want ErrRejected", err)
	}
	for _, p := range []*renewlock.Lock{p1, p2} {
		if err := p.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Free again: any limit now.
	p, err := c.TryAcquirePermit(ctx, name, 5)
	if err != nil {
		t.Fatalf("after all permits were released, a new limit: %v", err)
	}
	_ = p.Release(ctx)
	m, err := c.TryAcquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release(ctx)
	if _, err := c.TryAcquirePermit(ctx, m.Key(), 2); !errors.Is(err, renewlock.ErrRejected) {
		t.Fatalf("a semaphore on a mutex's name: %v, want ErrRejected", err)
	}
}

// A holder that crashes frees its permit when its lease ends; the waiter
// in the queue gets it then.
func TestSemaphoreCrashedHolder(t *testing.T) {
	const ttl = 500 * time.Millisecond
	srv, _, c := setup(t, renewlock.WithTTL(ttl))
	crashed := newClient(t, srv.Client(), renewlock.WithTTL(ttl))
	ctx := ctxT(t, 10*time.Second)
	name := uniqueKey(t)
	kept, err := c.AcquirePermit(ctx, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Release(ctx)
	gone, err := crashed.AcquirePermit(ctx, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	crash(t, crashed)
	start := time.Now()
	p, err := c.AcquirePermit(ctx, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("permit freed %v after the crash (TTL %v)", d, ttl)
	if d > ttl+time.Second {
		t.Fatalf("took %v", d)
	}
	if p.Token() <= gone.Token() {
		t.Fatalf("token %d after %d", p.Token(), gone.Token())
	}
	if closedWithin(kept.Done(), 2*ttl) {
		t.Fatalf("the other permit was lost: %v", kept.Err())
	}
	_ = p.Release(ctx)
}

// Readers share, a writer is alone; a steady stream of readers does not
// keep a writer out; a writer's token is above every earlier token.
func TestReadWriteLock(t *testing.T) {
	srv, _, c1 := setup(t, renewlock.WithTTL(time.Second))
	c2 := newClient(t, srv.Client(), renewlock.WithTTL(time.Second))
	ctx := ctxT(t, time.Minute)
	name := uniqueKey(t)
	var readers, writers, mostReaders atomic.Int32
	var tl tokenLog
	var writes atomic.Int64
	var maxWriterWait atomic.Int64
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range 8 {
		c := c1
		if w%2 == 1 {
			c = c2
		}
		writer := w < 2
		wg.Go(func() {
			for time.Now().Before(stop) {
				floor := tl.begin()
				start := time.Now()
				var l *renewlock.Lock
				var err error
				if writer {
					l, err = c.AcquireWrite(ctx, name)
				} else {
					l, err = c.AcquireRead(ctx, name)
				}
				if err != nil {
					t.Error(err)
					return
				}
				if err := tl.got(l.Token(), floor); err != nil {
					t.Errorf("token %d: %v", l.Token(), err)
				}
				if writer {
					wait := time.Since(start).Microseconds()
					for m := maxWriterWait.Load(); wait > m && !maxWriterWait.CompareAndSwap(m, wait); m = maxWriterWait.Load() {
					}
					if writers.Add(1) != 1 || readers.Load() != 0 {
						t.Error("a writer with another holder")
					}
					time.Sleep(time.Millisecond)
					writers.Add(-1)
					writes.Add(1)
				} else {
					n := readers.Add(1)
					for m := mostReaders.Load(); n > m && !mostReaders.CompareAndSwap(m, n); m = mostReaders.Load() {
					}
					if writers.Load() != 0 {
						t.Error("a reader with a writer")
					}
					time.Sleep(2 * time.Millisecond)
					readers.Add(-1)
				}
				if err := l.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d writes, up to %d readers at once, longest writer wait %v", writes.Load(), mostReaders.Load(),
		time.Duration(maxWriterWait.Load())*time.Microsecond)
	if writes.Load() < 10 {
		t.Fatalf("only %d writes in 1.5 s with readers streaming: writers starved", writes.Load())
	}
	if mostReaders.Load() < 2 {
		t.Fatalf("readers never shared the lock")
	}
}

// Shares of shared locks are renewed by the Client's loop like locks: held
// for several TTLs they stay valid; Inspect lists their holders; a force
// release removes them all and passes the room to the queue.
func TestSharedLeasesRenewInspectForce(t *testing.T) {
	const ttl = 300 * time.Millisecond
	srv, _, c := setup(t, renewlock.WithTTL(ttl))
	ops := newClient(t, srv.Client())
	ctx := ctxT(t, 20*time.Second)
	sem, rw := uniqueKey(t), uniqueKey(t)
	p1, err := c.AcquirePermit(ctx, sem, 3)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.AcquirePermit(ctx, sem, 3)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := c.AcquireRead(ctx, rw)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.AcquireRead(ctx, rw)
	if err != nil {
		t.Fatal(err)
	}
	// A writer waits behind the readers.
	wc := make(chan *renewlock.Lock, 1)
	go func() {
		w, err := c.AcquireWrite(ctx, rw)
		if err != nil {
			t.Error(err)
		}
		wc <- w
	}()
	time.Sleep(4 * ttl) // several renewals of every share and of the writer's place
	for i, l := range []*renewlock.Lock{p1, p2, r1, r2} {
		if err := l.Err(); err != nil {
			t.Fatalf("share %d lost while held: %v", i, err)
		}
	}
	info, err := ops.Inspect(ctx, sem)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != "semaphore" || info.Limit != 3 || len(info.Holders) != 2 || info.Token != p2.Token() || info.TTL <= 0 {
		t.Fatalf("Inspect(semaphore) = %+v", info)
	}
	info, err = ops.Inspect(ctx, rw)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != "read-write lock" || len(info.Holders) != 2 || info.Holders[0].Write || info.Waiters != 1 {
		t.Fatalf("Inspect(rw) = %+v", info)
	}
	// The operator removes both readers: the writer gets the lock.
	if _, err := ops.ForceRelease(ctx, rw); err != nil {
		t.Fatal(err)
	}
	var w *renewlock.Lock
	select {
	case w = <-wc:
	case <-time.After(2 * time.Second):
		t.Fatal("writer not granted after the readers were removed")
	}
	if w.Token() <= r2.Token() {
		t.Fatalf("writer token %d not above the readers' %d", w.Token(), r2.Token())
	}
	for _, r := range []*renewlock.Lock{r1, r2} {
		select {
		case <-r.Done():
			if !errors.Is(r.Err(), renewlock.ErrLeaseLost) {
				t.Fatalf("removed reader: %v", r.Err())
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a removed reader did not hear of it")
		}
	}
	info, err = ops.Inspect(ctx, rw)
	if err != nil || len(info.Holders) != 1 || !info.Holders[0].Write {
		t.Fatalf("Inspect(rw) after = %+v, %v", info, err)
	}
	for _, l := range []*renewlock.Lock{w, p1, p2} {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ops.Inspect(ctx, sem); !errors.Is(err, renewlock.ErrNotHeld) {
		t.Fatalf("Inspect of a free semaphore: %v", err)
	}
}

// Every kind of lease signals its loss before Redis could end it, when
// Redis stops answering (paused): a permit, a read share, a write share, a
// leadership.
func TestFamilyLossBeforeExpiryWhenRedisPaused(t *testing.T) {
	const ttl, interval = 1500 * time.Millisecond, 300 * time.Millisecond
	for _, kind := range []string{"permit", "read", "write", "leadership"} {
		t.Run(kind, func(t *testing.T) {
			srv, rdb, c := setup(t, renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval), renewlock.WithDrift(0.02))
			ops := newClient(t, rdb)
			ctx := ctxT(t, 20*time.Second)
			name := uniqueKey(t)
			var done <-chan struct{}
			var errf func() error
			switch kind {
			case "permit":
				l, err := c.AcquirePermit(ctx, name, 2)
				if err != nil {
					t.Fatal(err)
				}
				done, errf = l.Done(), l.Err
			case "read":
				l, err := c.AcquireRead(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				done, errf = l.Done(), l.Err
			case "write":
				l, err := c.AcquireWrite(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				done, errf = l.Done(), l.Err
			case "leadership":
				l, err := c.Campaign(ctx, name, "v")
				if err != nil {
					t.Fatal(err)
				}
				done, errf = l.Done(), l.Err
			}
			left := func() time.Duration {
				info, err := ops.Inspect(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if len(info.Holders) > 0 {
					return info.Holders[0].TTL
				}
				return info.TTL
			}
			// Catch the instant right after a renewal, then freeze Redis.
			var expiry time.Time
			prev := left()
			for {
				before := time.Now()
				l := left()
				if l > prev {
					srv.Pause()
					expiry = before.Add(l)
					break
				}
				prev = l
				time.Sleep(time.Millisecond)
			}
			defer srv.Resume()
			select {
			case <-done:
			case <-time.After(ttl + 5*time.Second):
				t.Fatal("loss never signalled while Redis was paused")
			}
			lead := time.Until(expiry)
			if !errors.Is(errf(), renewlock.ErrLeaseLost) {
				t.Fatalf("Err = %v, want ErrLeaseLost", errf())
			}
			t.Logf("loss signalled %v before the lease's end in Redis", lead)
			if lead <= 0 {
				t.Fatalf("loss signalled %v AFTER the lease ended in Redis", -lead)
			}
		})
	}
}

// Tokens and terms keep rising across a Redis restart that lost every key.
func TestFamilyTokensAcrossEmptyRestart(t *testing.T) {
	srv, _, c := setup(t)
	ctx := ctxT(t, 20*time.Second)
	name := uniqueKey(t)
	take := func() []uint64 {
		var out []uint64
		for _, f := range []func() (uint64, error){
			func() (uint64, error) {
				l, err := c.TryAcquirePermit(ctx, name+"/sem", 2)
				return tokenAndRelease(ctx, l, err)
			},
			func() (uint64, error) {
				l, err := c.TryAcquireRead(ctx, name+"/rw")
				return tokenAndRelease(ctx, l, err)
			},
			func() (uint64, error) {
				l, err := c.TryAcquireWrite(ctx, name+"/rw")
				return tokenAndRelease(ctx, l, err)
			},
			func() (uint64, error) {
				l, err := c.Campaign(ctx, name+"/el", "v")
				if err != nil {
					return 0, err
				}
				defer l.Resign(ctx)
				return l.Term(), nil
			},
		} {
			tok, err := f()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, tok)
		}
		return out
	}
	before := take()
	srv.Restart() // empty: no persistence
	after := take()
	for i := range before {
		if after[i] <= before[i] {
			t.Fatalf("kind %d: token %d after the restart, %d before", i, after[i], before[i])
		}
	}
}

func tokenAndRelease(ctx context.Context, l *renewlock.Lock, err error) (uint64, error) {
	if err != nil {
		return 0, err
	}
	defer l.Release(ctx)
	return l.Token(), nil
}
