package cookbook

import (
	"context"
	"errors"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// Main is a service's main function: it holds the lock key while work runs,
// and shuts down cleanly on SIGTERM (Kubernetes, systemd) or SIGINT
// (Ctrl-C).
func Main(rdb redis.UniversalClient, key string, work func(ctx context.Context, token uint64) error) error {
	// 1. A signal cancels ctx.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	locks, err := renewlock.New(rdb)
	if err != nil {
		return err
	}
	l, err := locks.Acquire(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			err = nil // a signal while waiting: nothing to stop
		}
		return errors.Join(err, locks.Close())
	}
	// 2. The work stops when ctx is cancelled, or when the lease is lost.
	workCtx, cancel := l.Context(ctx)
	werr := work(workCtx, l.Token())
	cancel()
	// 3. Release hands the lock to the next waiter at once, on a fresh
	// context: ctx is cancelled already.
	relCtx, relCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer relCancel()
	rerr := l.Release(relCtx)
	// 4. Close stops renewals, leaves the queues, releases whatever is
	// still held and joins every goroutine of the Client.
	cerr := locks.Close()
	if ctx.Err() != nil && errors.Is(werr, context.Canceled) {
		werr = nil // stopped by the signal, as asked
	}
	return errors.Join(werr, rerr, cerr)
}
