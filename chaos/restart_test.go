package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// TestManyLocksSurviveRepeatedRestarts holds many locks on one Client while
// Redis is killed and restarted empty again and again. Every restart must
// end every lease with ErrLeaseLost (renewal finds no key), the Client must
// keep working (re-acquire everything, waiters still wake on release), and
// neither goroutines nor heap may grow from one round to the next.
func TestManyLocksSurviveRepeatedRestarts(t *testing.T) {
	const (
		locks  = 200
		rounds = 8
		ttl    = 500 * time.Millisecond
	)
	srv := redistest.Start(t)
	rdb := srv.Client()
	quiet := renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c, err := renewlock.New(rdb, renewlock.WithTTL(ttl), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other, err := renewlock.New(srv.Client(), renewlock.WithTTL(ttl), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	acquireAll := func() []*renewlock.Lock {
		t.Helper()
		out := make([]*renewlock.Lock, locks)
		for i := range out {
			l, err := c.TryAcquire(ctx, fmt.Sprintf("many/%d", i))
			if err != nil {
				t.Fatalf("TryAcquire many/%d: %v", i, err)
			}
			out[i] = l
		}
		return out
	}
	var goroutines []int
	var heap []uint64
	held := acquireAll()
	for round := 0; round < rounds; round++ {
		// A waiter of another Client blocked on a held key: its pub/sub
		// connection dies with Redis too and must recover.
		waited := make(chan error, 1)
		go func() {
			l, err := other.Acquire(ctx, "many/0")
			if err == nil {
				err = l.Release(ctx)
			}
			waited <- err
		}()

		srv.Restart()
		for i, l := range held {
			select {
			case <-l.Done():
			case <-time.After(2 * ttl):
				t.Fatalf("round %d: lock %d not told of its loss %v after a restart", round, i, 2*ttl)
			}
			if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
				t.Fatalf("round %d: lock %d: Err = %v, want ErrLeaseLost", round, i, l.Err())
			}
			if err := l.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
				t.Fatalf("round %d: Release of lost lock %d = %v, want ErrLeaseLost", round, i, err)
			}
		}
		if err := <-waited; err != nil {
			t.Fatalf("round %d: waiter across the restart: %v", round, err)
		}
		held = acquireAll()

		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		goroutines = append(goroutines, runtime.NumGoroutine())
		heap = append(heap, ms.HeapAlloc)
	}
	for _, l := range held {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("goroutines per round: %v", goroutines)
	t.Logf("heap per round (bytes): %v", heap)
	// Round 0 warms up pools and the subscription; compare later rounds
	// with round 1. Allow a few goroutines of slack for connection
	// goroutines that are still closing, and 4 MiB of heap for GC noise.
	base := goroutines[1]
	for i, g := range goroutines[2:] {
		if g > base+5 {
			t.Errorf("goroutines grew from %d (round 1) to %d (round %d)", base, g, i+2)
		}
	}
	if last, first := heap[len(heap)-1], heap[1]; last > first+4<<20 {
		t.Errorf("heap grew from %d to %d bytes over %d restarts", first, last, rounds-2)
	}
}
