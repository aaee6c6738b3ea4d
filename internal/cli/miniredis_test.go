package cli

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// TestLibraryOnMiniredis checks that the library's scripts work on the
// embedded server the demo falls back to: TIME and PUBLISH inside Lua,
// HMGET/PTTL/PEXPIRE, pub/sub wake-ups, and expiry driven by the demo's
// FastForward ticker.
func TestLibraryOnMiniredis(t *testing.T) {
	srv, err := startMiniredis()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ttl = 300 * time.Millisecond
	newClient := func() (*renewlock.Client, redis.UniversalClient) {
		rdb, err := NewRedisClient(RedisTarget{URL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		c, err := renewlock.New(rdb, renewlock.WithTTL(ttl), renewlock.WithLogger(nil), renewlock.WithHolder("h:1"))
		if err != nil {
			t.Fatal(err)
		}
		return c, rdb
	}
	a, ardb := newClient()
	defer ardb.Close()
	defer a.Close()
	b, brdb := newClient()
	defer brdb.Close()
	defer b.Close()

	l, err := a.TryAcquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryAcquire(ctx, "k"); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("second TryAcquire: %v, want ErrNotAcquired", err)
	}
	info, err := b.Inspect(ctx, "k")
	if err != nil || info.Token != l.Token() || info.Holder != "h:1" || info.AcquiredAt.IsZero() || info.TTL <= 0 {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
	if list, err := b.List(ctx, ""); err != nil || len(list) != 1 || list[0].Key != "k" {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// Renewal keeps the lease past several TTLs.
	select {
	case <-l.Done():
		t.Fatalf("lost the lease on miniredis: %v", l.Err())
	case <-time.After(3 * ttl):
	}
	if pttl := ardb.PTTL(ctx, "renewlock:k").Val(); pttl <= 0 {
		t.Fatalf("PTTL after 3 TTLs = %v: not renewed", pttl)
	}

	// A release grants the lock to the waiter and tells it through PUBLISH
	// in the script.
	got := make(chan *renewlock.Lock, 1)
	errc := make(chan error, 1)
	go func() {
		l2, err := b.Acquire(ctx, "k")
		errc <- err
		got <- l2
	}()
	// Release once the waiter is queued, so only the grant's message (not
	// a renewal of the waiter's place) can wake it at once.
	for ardb.HGet(ctx, "renewlock:k", "qn").Val() == "" {
		if ctx.Err() != nil {
			t.Fatal("the waiter never queued")
		}
		time.Sleep(time.Millisecond)
	}
	released := time.Now()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	l2 := <-got
	handoff := time.Since(released)
	t.Logf("hand-off on miniredis: %v", handoff)
	if handoff >= ttl {
		t.Fatalf("hand-off took %v: the release notification did not wake the waiter", handoff)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l.Token())
	}

	// A holder that stops renewing: its lease expires with the ticker.
	_ = brdb.Close() // b's renewals now fail; nothing is released
	start := time.Now()
	l3, err := a.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("takeover after an abandoned lease on miniredis: %v (TTL %v)", time.Since(start), ttl)
	if l3.Token() <= l2.Token() {
		t.Fatalf("token %d after %d", l3.Token(), l2.Token())
	}

	// ForceRelease returns what it removed.
	removed, err := a.ForceRelease(ctx, "k")
	if err != nil || removed.Token != l3.Token() {
		t.Fatalf("ForceRelease = %+v, %v", removed, err)
	}
	if _, err := a.Inspect(ctx, "k"); !errors.Is(err, renewlock.ErrNotHeld) {
		t.Fatalf("Inspect after ForceRelease: %v", err)
	}
}
