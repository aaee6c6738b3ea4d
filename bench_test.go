package renewlock

// Benchmarks of the hot paths, each on its own redis-server (loopback):
//
//	go test -run '^$' -bench . -benchmem
//
// They report time and allocations per operation; nothing here asserts a
// speed. The side-by-side comparison with other libraries is the separate
// module in bench/ (see BENCHMARKS.md).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redistest"
)

func benchClient(b *testing.B, rdb redis.UniversalClient, opts ...Option) *Client {
	b.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	c, err := New(rdb, opts...)
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkAcquireRelease is one uncontended acquire+release pair: two
// round trips (acquire script, release script) on one connection.
func BenchmarkAcquireRelease(b *testing.B) {
	srv := redistest.Start(b)
	c := benchClient(b, srv.Client())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l, err := c.Acquire(ctx, "bench:acquire")
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTryAcquireHeld is the cost of finding a key held by another:
// one round trip that returns the holder's remaining TTL.
func BenchmarkTryAcquireHeld(b *testing.B) {
	srv := redistest.Start(b)
	c := benchClient(b, srv.Client())
	ctx := context.Background()
	l, err := c.Acquire(ctx, "bench:held")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.TryAcquire(ctx, "bench:held"); err == nil {
			b.Fatal("TryAcquire took a held key")
		}
	}
	b.StopTimer()
	if err := l.Release(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAcquireReleaseParallel runs pairs on distinct keys from
// GOMAXPROCS×16 goroutines sharing one Client.
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	srv := redistest.Start(b)
	c := benchClient(b, srv.Client())
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		key := "bench:parallel:" + strconv.FormatInt(seq.Add(1), 10)
		for pb.Next() {
			l, err := c.Acquire(ctx, key)
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.Release(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRenewBatch renews n held locks in one pipelined round trip, as
// the renewal loop does at each tick. ns/lock is the cost per held lock.
func BenchmarkRenewBatch(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("locks=%d", n), func(b *testing.B) {
			srv := redistest.Start(b)
			rdb := srv.Client()
			// A long TTL keeps the background loop from renewing meanwhile.
			c := benchClient(b, rdb, WithTTL(time.Hour))
			locks := acquireMany(b, c, "bench:renew:", n)
			ctx := context.Background()
			leases := make([]*lease, len(locks))
			for i, l := range locks {
				leases[i] = l.le
			}
			var loaded atomic.Bool
			b.ReportAllocs()
			for b.Loop() {
				for i, r := range renewMany(ctx, rdb, &loaded, leases) {
					if r.err != nil || r.code != renewHeld {
						b.Fatalf("lock %d not renewed: %v", i, r.err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/lock")
		})
	}
}

// acquireMany takes n locks named prefix+i from 32 goroutines.
func acquireMany(b *testing.B, c *Client, prefix string, n int) []*Lock {
	b.Helper()
	ctx := context.Background()
	locks := make([]*Lock, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				locks[i], errs[i] = c.Acquire(ctx, prefix+strconv.Itoa(i))
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("acquire %d: %v", i, err)
		}
	}
	return locks
}

// BenchmarkHandoff measures release → a waiter blocked in Acquire on
// another Client holds the lock: the release script grants the lock to
// the head of the queue and publishes the grant on the waiter's Client
// channel, which hands it over on arrival (no second round trip). Only
// that span is timed.
func BenchmarkHandoff(b *testing.B) {
	srv := redistest.Start(b)
	holder := benchClient(b, srv.Client())
	waiter := benchClient(b, srv.Client())
	ctx := context.Background()
	const key = "bench:handoff"
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		l, err := holder.Acquire(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		got := make(chan *Lock)
		go func() {
			l2, err := waiter.Acquire(ctx, key)
			if err != nil {
				b.Error(err)
			}
			got <- l2
		}()
		// The waiter is blocked once it has a place in the lock's queue.
		waitForWaiters(b, holder, key, 1)
		b.StartTimer()
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
		l2 := <-got
		b.StopTimer()
		if l2 == nil {
			b.FailNow()
		}
		if err := l2.Release(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkHandoffLocal measures release → a waiter blocked in Acquire on
// the same Client holds the lock: the release script grants the lock to
// the waiter and names it in its reply, so Release hands it over in its
// own round trip (no PUBLISH). Only that span is timed.
func BenchmarkHandoffLocal(b *testing.B) {
	srv := redistest.Start(b)
	admin := srv.Client()
	// A lost wake-up shows as a stall of one TTL (the waiter's fallback
	// timer): a short TTL keeps such a run short, and stalls>100ms counts it.
	c := benchClient(b, srv.Client(), WithTTL(time.Second))
	ctx := context.Background()
	const key = "bench:handoff-local"
	pub0 := publishes(b, admin)
	var slowest time.Duration
	stalls := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		l, err := c.Acquire(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		got := make(chan *Lock)
		go func() {
			l2, err := c.Acquire(ctx, key)
			if err != nil {
				b.Error(err)
			}
			got <- l2
		}()
		// The waiter is blocked once it has a place in the lock's queue.
		waitForWaiters(b, c, key, 1)
		b.StartTimer()
		t0 := time.Now()
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
		l2 := <-got
		b.StopTimer()
		if el := time.Since(t0); el > slowest {
			slowest = el
		}
		if time.Since(t0) > 100*time.Millisecond {
			stalls++
		}
		if l2 == nil {
			b.FailNow()
		}
		if err := l2.Release(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	// Two releases per iteration; a grant named in the reply publishes
	// nothing, so anything above 0 means grants went through pub/sub.
	b.ReportMetric(float64(publishes(b, admin)-pub0)/float64(b.N), "publish/op")
	b.ReportMetric(float64(slowest.Microseconds()), "max-µs")
	b.ReportMetric(float64(stalls), "stalls>100ms")
}

// publishes returns how many PUBLISH commands the server has run.
func publishes(b *testing.B, admin *redis.Client) int64 {
	b.Helper()
	s, err := admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	_, rest, ok := strings.Cut(s, "cmdstat_publish:calls=")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
	return n
}

// waitForWaiters polls until key's queue holds n places.
func waitForWaiters(b *testing.B, c *Client, key string, n int) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := c.Inspect(context.Background(), key)
		if err == nil && info != nil && info.Waiters == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d waiters never queued (last: %+v, %v)", key, n, info, err)
		}
		time.Sleep(50 * time.Microsecond)
	}
}
