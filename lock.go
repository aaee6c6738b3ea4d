package renewlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// A Lock is one acquisition of a key. While it is held the Client renews its
// lease in the background. A Lock is safe for use by several goroutines.
//
// The holder must stop acting on the protected resource as soon as Done is
// closed, and should pass Token to any resource that can check it.
type Lock struct {
	c     *Client
	key   string // the user's key
	le    *lease // its lease in the Client's engine
	token uint64 // set once, when it is taken (before it is handed out)

	relMu      sync.Mutex // one Release at a time
	mu         sync.Mutex
	done       chan struct{}
	err        error // why done was closed
	lost       bool  // done was closed by a loss (err wraps ErrLeaseLost) or Close
	notOurs    bool  // Redis told us the key is not ours: nothing to clean up
	released   bool  // Release reached a definitive outcome
	releaseErr error // that outcome
	acquired   int64 // when the acquisition returned it (Unix ns); set for an Observer only
	// ctx is cancelled, with err as its cause, when done is closed; made by
	// the first call of Context.
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// Key returns the key the lock was taken on, as passed to Acquire.
func (l *Lock) Key() string { return l.key }

// Token returns the fencing token of this acquisition. For one key, every
// later acquisition gets a strictly larger token, also after the lease
// expired or Redis restarted without data. Hand it to the protected resource
// and have it reject writes carrying a token smaller than the largest it has
// seen: that keeps the resource safe even from a holder that was paused past
// its lease.
func (l *Lock) Token() uint64 { return l.token }

// Done returns a channel that is closed when the lock is no longer held:
// the lease was lost (Err wraps ErrLeaseLost), it was released (ErrReleased),
// or the Client was closed (ErrClientClosed).
func (l *Lock) Done() <-chan struct{} { return l.done }

// Err returns nil while the lock is held, and after Done is closed the reason:
// an error wrapping ErrLeaseLost, ErrReleased, or ErrClientClosed.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Context returns a copy of parent that is cancelled when parent is done or
// when the lock stops being held, whichever comes first. Its cause
// (context.Cause) is then Err. Call the returned cancel function when the work
// is finished, to release the context's resources.
//
// Calling Context many times on a long-held lock is fine: each cancel
// function frees what its context registered.
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	lctx := l.doneContext()
	stop := context.AfterFunc(lctx, func() { cancel(context.Cause(lctx)) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

// doneContext returns a context cancelled, with Err as its cause, when the
// lock is done.
func (l *Lock) doneContext() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil {
		l.ctx, l.cancel = context.WithCancelCause(context.Background())
		if l.err != nil {
			l.cancel(l.err)
		}
	}
	return l.ctx
}

// finish closes Done with err, once. It reports whether this call closed it.
func (l *Lock) finish(err error, lost bool) bool {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return false
	}
	l.err, l.lost = err, lost
	close(l.done)
	if l.cancel != nil {
		l.cancel(err)
	}
	l.mu.Unlock()
	return true
}

// lose records a loss of the lease. notOurs says Redis confirmed the key is no
// longer ours, so Release need not touch Redis.
func (l *Lock) lose(cause string, notOurs bool) {
	err := fmt.Errorf("%w: key %q (token %d): %s", ErrLeaseLost, l.key, l.token, cause)
	l.mu.Lock()
	l.notOurs = l.notOurs || notOurs
	l.mu.Unlock()
	if l.finish(err, true) {
		l.le.cfg.logger.Warn("renewlock: lease lost", "key", l.key, "token", l.token, "cause", cause)
		why := LossDeadline
		if notOurs {
			why = LossNotOwner
		}
		l.observeLoss(why, err)
	}
}

// acquiredAt returns when the acquisition returned l (for an Observer).
func (l *Lock) acquiredAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acquired == 0 {
		return time.Time{}
	}
	return time.Unix(0, l.acquired)
}

// observeLoss tells the Observer, if any, of a loss.
func (l *Lock) observeLoss(cause LossCause, err error) {
	if o := l.le.cfg.observer; o != nil && o.Lost != nil {
		ev := LostEvent{Key: l.key, Token: l.token, Cause: cause, Err: err}
		if at := l.acquiredAt(); !at.IsZero() {
			ev.Held = time.Since(at)
		}
		o.Lost(ev)
	}
}

// loseErr records a loss of the lease caused by err, which the loss error
// wraps too.
func (l *Lock) loseErr(err error) {
	lerr := fmt.Errorf("%w: key %q (token %d): %w", ErrLeaseLost, l.key, l.token, err)
	if l.finish(lerr, true) {
		l.le.cfg.logger.Warn("renewlock: lease lost", "key", l.key, "token", l.token, "cause", err)
		l.observeLoss(LossRejected, lerr)
	}
}

// releaseFailed handles a release whose outcome is unknown (Redis did not
// answer): renewal is stopped, so the lease ends within one TTL whatever
// happened, and a later Release tries again. A deadline that passed while
// Redis did not answer is reported too.
func (l *Lock) releaseFailed(err error) error {
	l.finish(ErrReleased, false)
	if lost := l.lostErr(); lost != nil { // the deadline passed meanwhile
		return errors.Join(lost, err)
	}
	return err
}

// lostErr returns Err if the lease was lost, else nil.
func (l *Lock) lostErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return l.err
	}
	return nil
}

// Release gives the lock up: it stops renewal and, in one round trip,
// deletes the lease if it is still this holder's (never another's), or
// passes the lock straight to the first waiter in the lock's queue (new
// owner, new token), whichever client it is in. It returns an error
// wrapping ErrLeaseLost if the lease had been lost before (or the validity
// deadline passed while Redis did not answer the release), because work
// done under the lock may then not have been exclusive. Calling Release
// again, also concurrently, returns the same result.
//
// If ctx ends or Redis cannot be reached, the error is returned and renewal
// stays stopped, so the lease ends within one TTL; a release already on the
// wire still takes effect when Redis gets it. A later Release tries again,
// and returns nil if the lease is gone by then.
func (l *Lock) Release(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	if o := l.le.cfg.observer; o != nil && o.Released != nil {
		start := time.Now()
		handedOff, err := l.release(ctx)
		ev := ReleaseEvent{Ctx: ctx, Key: l.key, Token: l.token, Start: start, Duration: time.Since(start),
			HandedOff: handedOff, Err: err}
		if at := l.acquiredAt(); !at.IsZero() {
			ev.Held = start.Sub(at)
		}
		o.Released(ev)
		return err
	}
	_, err := l.release(ctx)
	return err
}

// release is Release; handedOff says the lock went straight to a waiter.
func (l *Lock) release(ctx context.Context) (handedOff bool, _ error) {
	l.relMu.Lock()
	defer l.relMu.Unlock()
	// Renewal stops now, but the renewal loop keeps watching the validity
	// deadline until the release is done: if Redis does not answer in time,
	// Done still closes at the deadline, as the holder was promised.
	eng := l.c.eng
	eng.releasing(l.le)
	defer eng.remove(l.le)
	l.mu.Lock()
	if l.released {
		err := l.releaseErr
		l.mu.Unlock()
		return false, err
	}
	lostErr, notOurs := error(nil), l.notOurs
	if l.lost {
		lostErr = l.err
	}
	l.mu.Unlock()

	var result error
	if notOurs {
		result = lostErr
	} else {
		res, err := l.c.releaseCall(ctx, l.le)
		if err != nil {
			err = fmt.Errorf("renewlock: release %q: %w", l.key, err)
			if lostErr != nil {
				return false, errors.Join(lostErr, err)
			}
			return false, l.releaseFailed(err)
		}
		handedOff = res.handedOff
		switch {
		case !res.ours && l.Err() == ErrReleased:
			// An earlier Release had an unknown outcome, and renewal
			// stopped then: the key is not ours any more because that
			// release went through or the unrenewed lease ran out after
			// it. Either way the lock is released.
		case !res.ours:
			l.lose("not the owner at release (expired or taken over)", true)
			result = l.Err()
		case lostErr != nil:
			// Lost by deadline but still ours in Redis: cleaned up now, yet
			// the holder must hear that it was not protected throughout.
			result = lostErr
		default:
			l.finish(ErrReleased, false)
			result = l.lostErr() // the deadline passed while Redis was slow
		}
	}
	l.mu.Lock()
	l.released, l.releaseErr = true, result
	l.mu.Unlock()
	return handedOff, result
}
