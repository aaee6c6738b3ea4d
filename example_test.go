package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// Take a lock, work while it is held, release it. The lease renews itself
// in the background for as long as the lock is held.
func ExampleClient_Acquire() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := locks.Acquire(ctx, "example:nightly-report")
	if err != nil {
		log.Fatal(err) // ctx ended before the lock was free, or Redis failed
	}
	select {
	case <-l.Done():
		fmt.Println("lost the lock:", l.Err())
	default:
		fmt.Println("holding", l.Key())
	}
	if err := l.Release(ctx); err != nil {
		log.Fatal(err) // wraps ErrLeaseLost if the lease had been lost
	}
	fmt.Println(errors.Is(l.Err(), renewlock.ErrReleased))
	// Output:
	// holding example:nightly-report
	// true
}

// Do is the simplest safe use: fn's context is cancelled the moment the
// lease is lost, and the lock is released when fn returns, even on panic.
func ExampleClient_Do() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb, renewlock.WithTTL(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	err = locks.Do(context.Background(), "example:migrate", func(ctx context.Context, l *renewlock.Lock) error {
		// Long work goes here; check ctx between steps and stop when it is done.
		fmt.Println("migrating under token > 0:", l.Token() > 0)
		return ctx.Err()
	})
	if errors.Is(err, renewlock.ErrLeaseLost) {
		fmt.Println("lost the lease while working; the work may not have been exclusive")
	}
	fmt.Println("err:", err)
	// Output:
	// migrating under token > 0: true
	// err: <nil>
}

// TryAcquire does not wait: it fails with ErrNotAcquired while another
// holder has the key.
func ExampleClient_TryAcquire() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	ctx := context.Background()

	first, err := locks.TryAcquire(ctx, "example:cron")
	if err != nil {
		log.Fatal(err)
	}
	_, err = locks.TryAcquire(ctx, "example:cron")
	fmt.Println("second attempt:", errors.Is(err, renewlock.ErrNotAcquired))
	_ = first.Release(ctx)
	// Output:
	// second attempt: true
}

// fencedStore is a resource that checks fencing tokens: it accepts a write
// only with a token at least as large as any it has seen, so a holder that
// was paused past its lease and wakes up cannot overwrite newer data.
type fencedStore struct {
	mu      sync.Mutex
	highest uint64
	value   string
}

func (s *fencedStore) Write(token uint64, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("stale token %d < %d: rejected", token, s.highest)
	}
	s.highest, s.value = token, value
	return nil
}

// Pass the fencing token to the protected resource with every write.
func ExampleLock_Token() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	ctx := context.Background()
	store := &fencedStore{}

	old, _ := locks.Acquire(ctx, "example:fenced")
	_ = old.Release(ctx) // imagine instead: old holder paused, lease expired
	fresh, _ := locks.Acquire(ctx, "example:fenced")
	defer fresh.Release(ctx)

	fmt.Println("new holder writes:", store.Write(fresh.Token(), "new") == nil)
	fmt.Println("stale holder writes:", store.Write(old.Token(), "old") == nil)
	// Output:
	// new holder writes: true
	// stale holder writes: false
}

// Watch for loss while working without Do: select on Done, or derive a
// context with Lock.Context.
func ExampleLock_Context() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	locks, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	l, err := locks.Acquire(context.Background(), "example:ctx")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := l.Context(context.Background())
	defer cancel()
	_ = l.Release(context.Background())
	<-ctx.Done() // also closes on lease loss, with context.Cause = l.Err()
	fmt.Println(context.Cause(ctx))
	// Output:
	// renewlock: lock released
}

// An Observer sees every acquisition, renewal round trip, loss and release,
// for metrics and traces (the observe module plugs it into Prometheus and
// OpenTelemetry). Its functions run in the goroutine doing the work, so they
// must be quick.
func ExampleWithObserver() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	var mu sync.Mutex
	acquired, handedOff := 0, 0
	obs := &renewlock.Observer{
		Acquired: func(e renewlock.AcquireEvent) {
			if e.Err == nil {
				mu.Lock()
				acquired++
				mu.Unlock()
			}
		},
		Released: func(e renewlock.ReleaseEvent) {
			if e.HandedOff {
				mu.Lock()
				handedOff++
				mu.Unlock()
			}
		},
	}
	locks, err := renewlock.New(rdb, renewlock.WithObserver(obs))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	ctx := context.Background()
	for range 3 {
		if err := locks.Do(ctx, "example:observed", func(context.Context, *renewlock.Lock) error { return nil }); err != nil {
			log.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Println("acquired:", acquired, "handed off:", handedOff)
	fmt.Println("held now:", locks.Stats().Held)
	// Output:
	// acquired: 3 handed off: 0
	// held now: 0
}
