package cookbook

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/renewlock/renewlock"
)

// Lead runs work while this process holds the lock name, as the leader of
// the processes that call Lead with the same name, and waits in the lock's
// queue otherwise, until ctx ends. Every replica of a Deployment runs it;
// one at a time leads, and the next in line takes over at once when the
// leader shuts down, or one TTL after it crashed.
//
// work must run until its ctx is cancelled, which happens when the lease is
// lost (and when ctx ends); it should pass token to what it writes. Lead
// returns nil when ctx ends, and work's error otherwise (let the process
// exit and restart: the lock passes to the next replica meanwhile).
func Lead(ctx context.Context, locks *renewlock.Client, name string,
	work func(ctx context.Context, token uint64) error) error {
	for {
		l, err := locks.Acquire(ctx, name) // waits in line; retries while Redis is down
		if err != nil {
			if ctx.Err() != nil {
				return nil // shutting down
			}
			return err // ErrRejected, ErrPermission: a configuration to fix
		}
		slog.Info("leading", "lock", name, "token", l.Token())
		leadCtx, cancel := l.Context(ctx)
		err = work(leadCtx, l.Token())
		cancel()
		relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		relErr := l.Release(relCtx) // hands the lock to the next replica in line
		relCancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(relErr, renewlock.ErrLeaseLost):
			slog.Warn("leadership lost; queueing again", "lock", name, "err", relErr)
		case err != nil:
			return err
		}
	}
}
