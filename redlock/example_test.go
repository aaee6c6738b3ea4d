package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/redlock"
)

// Take a lock on a majority of three independent masters, work while it is
// held, and hand its fencing token to the protected resource.
func Example() {
	var masters []redis.UniversalClient
	for _, addr := range exampleAddrs { // three independent redis-servers
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		masters = append(masters, rdb)
	}
	locks, err := redlock.New(masters, renewlock.WithTTL(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()
	fmt.Println("quorum:", locks.Quorum(), "of", len(masters))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := locks.Acquire(ctx, "example:invoice-run")
	if err != nil {
		log.Fatal(err) // ctx ended first, or Redis failed on a majority
	}
	first := l.Token()
	select {
	case <-l.Done(): // fewer than a quorum still hold it: stop at once
		fmt.Println("lost:", l.Err())
	default:
		fmt.Println("holding", l.Key())
	}
	if err := l.Release(ctx); err != nil {
		log.Fatal(err) // wraps ErrLeaseLost if the lock had been lost
	}

	// The next holder's token is larger, whichever masters it got.
	l, err = locks.Acquire(ctx, "example:invoice-run")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release(ctx)
	fmt.Println("next token larger:", l.Token() > first)
	// Output:
	// quorum: 2 of 3
	// holding example:invoice-run
	// next token larger: true
}

// TryAcquire does not wait: it fails with renewlock.ErrNotAcquired while
// others hold the key on a majority of the masters.
func ExampleClient_TryAcquire() {
	var masters []redis.UniversalClient
	for _, addr := range exampleAddrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		masters = append(masters, rdb)
	}
	a, _ := redlock.New(masters)
	defer a.Close()
	b, _ := redlock.New(masters)
	defer b.Close()

	ctx := context.Background()
	l, err := a.TryAcquire(ctx, "example:cron")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release(ctx)
	_, err = b.TryAcquire(ctx, "example:cron")
	fmt.Println(errors.Is(err, renewlock.ErrNotAcquired))
	// Output: true
}
