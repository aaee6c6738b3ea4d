package cookbook

import (
	"context"
	"errors"
	"time"

	"github.com/renewlock/renewlock"
)

// RunOnce runs job on one host of those whose cron fires at the same time:
// the one that takes the lock first; the others skip this run. It is the
// Go form of `renewlock run -n -k NAME -- CMD` in a crontab.
//
// The lock is kept for at least minHold after it was taken, even if the job
// is done sooner: a host whose clock or cron is a few seconds late must
// still find the lock held, or it would run the job a second time. Set
// minHold above the worst skew between the hosts' schedules and below the
// schedule's period.
func RunOnce(ctx context.Context, locks *renewlock.Client, name string, minHold time.Duration,
	job func(ctx context.Context, token uint64) error) (ran bool, err error) {
	l, err := locks.TryAcquire(ctx, name)
	if errors.Is(err, renewlock.ErrNotAcquired) {
		return false, nil // another host runs it this time
	}
	if err != nil {
		return false, err // Redis unreachable or refusing: let cron report it
	}
	taken := time.Now()
	jobCtx, cancel := l.Context(ctx) // cancelled if the lease is lost
	err = job(jobCtx, l.Token())
	cancel()

	// Keep the lock until minHold has passed, unless the lease is lost or
	// ctx ends meanwhile.
	select {
	case <-time.After(time.Until(taken.Add(minHold))):
	case <-l.Done():
	case <-ctx.Done():
	}
	relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer relCancel()
	// A release error wrapping ErrLeaseLost means the job may have run
	// while another host held the lock: report it.
	return true, errors.Join(err, l.Release(relCtx))
}
