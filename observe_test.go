package renewlock_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
)

// recorder collects what an Observer is told.
type recorder struct {
	mu       sync.Mutex
	acquired []renewlock.AcquireEvent
	renewed  []renewlock.RenewEvent
	lost     []renewlock.LostEvent
	released []renewlock.ReleaseEvent
}

func (r *recorder) observer() *renewlock.Observer {
	return &renewlock.Observer{
		Acquired: func(e renewlock.AcquireEvent) { r.mu.Lock(); r.acquired = append(r.acquired, e); r.mu.Unlock() },
		Renewed:  func(e renewlock.RenewEvent) { r.mu.Lock(); r.renewed = append(r.renewed, e); r.mu.Unlock() },
		Lost:     func(e renewlock.LostEvent) { r.mu.Lock(); r.lost = append(r.lost, e); r.mu.Unlock() },
		Released: func(e renewlock.ReleaseEvent) { r.mu.Lock(); r.released = append(r.released, e); r.mu.Unlock() },
	}
}

func (r *recorder) snapshot() recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorder{
		acquired: append([]renewlock.AcquireEvent(nil), r.acquired...),
		renewed:  append([]renewlock.RenewEvent(nil), r.renewed...),
		lost:     append([]renewlock.LostEvent(nil), r.lost...),
		released: append([]renewlock.ReleaseEvent(nil), r.released...),
	}
}

// The Observer hears every acquisition (with its outcome, queueing and
// token), every renewal round trip, every loss with its cause, and every
// release (with hand-offs); Stats counts held locks and waiters.
func TestObserver(t *testing.T) {
	var rec recorder
	srv, rdb, c := setup(t, renewlock.WithObserver(rec.observer()), renewlock.WithTTL(300*time.Millisecond))
	other := newClient(t, srv.Client())
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)

	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Held != 1 || s.Waiting != 0 {
		t.Fatalf("Stats = %+v, want 1 held", s)
	}
	if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("TryAcquire: %v", err)
	}
	// A waiter in the same client; the release hands the lock to it.
	got := make(chan *renewlock.Lock, 1)
	go func() {
		l2, err := c.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	waitFor(t, 5*time.Second, "the waiter", func() bool { return c.Stats().Waiting == 1 })
	time.Sleep(250 * time.Millisecond) // renewals of the lock and of the waiter's place
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := <-got
	if l2 == nil {
		t.FailNow()
	}
	// Someone else takes the key over: the holder loses it.
	if _, err := other.ForceRelease(ctx, key); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l2.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("loss not seen")
	}
	_ = l2.Release(ctx)
	// Lost is called right after Done closes, from the renewal loop.
	waitFor(t, 2*time.Second, "the loss event", func() bool { return len(rec.snapshot().lost) == 1 })

	s := rec.snapshot()
	if len(s.acquired) != 3 {
		t.Fatalf("%d acquire events, want 3: %+v", len(s.acquired), s.acquired)
	}
	first, tried, queued := s.acquired[0], s.acquired[1], s.acquired[2]
	if first.Err != nil || first.Token != l.Token() || first.Queued || first.Key != key || first.Ctx != ctx {
		t.Fatalf("first acquire event %+v", first)
	}
	if !errors.Is(tried.Err, renewlock.ErrNotAcquired) || tried.Token != 0 {
		t.Fatalf("TryAcquire event %+v", tried)
	}
	if queued.Err != nil || !queued.Queued || queued.Token != l2.Token() || queued.Duration < 250*time.Millisecond {
		t.Fatalf("queued acquire event %+v", queued)
	}
	if len(s.released) != 2 || !s.released[0].HandedOff || s.released[0].Token != l.Token() || s.released[0].Held < 250*time.Millisecond || s.released[0].Err != nil {
		t.Fatalf("release events %+v", s.released)
	}
	if !errors.Is(s.released[1].Err, renewlock.ErrLeaseLost) || s.released[1].HandedOff {
		t.Fatalf("release of the lost lock %+v", s.released[1])
	}
	if len(s.lost) != 1 || s.lost[0].Cause != renewlock.LossNotOwner || s.lost[0].Token != l2.Token() || !errors.Is(s.lost[0].Err, renewlock.ErrLeaseLost) {
		t.Fatalf("loss events %+v", s.lost)
	}
	if s.lost[0].Cause.String() != "not_owner" {
		t.Fatalf("cause name %q", s.lost[0].Cause)
	}
	var leases int
	for _, r := range s.renewed {
		leases += r.Leases
		if r.RTT <= 0 {
			t.Fatalf("renew event without RTT: %+v", r)
		}
	}
	if leases < 2 {
		t.Fatalf("renew events %+v: want the lock and the waiter's place renewed", s.renewed)
	}
	if st := c.Stats(); st.Held != 0 || st.Waiting != 0 {
		t.Fatalf("Stats at the end = %+v", st)
	}
	_ = rdb
}
