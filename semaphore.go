package renewlock

import (
	"context"
	"fmt"
)

// MaxPermits is the largest semaphore limit accepted. A contended
// acquisition of a semaphore costs Redis time in proportion to its holders
// (it drops those whose lease has ended), so the limit stays where that is
// well under a millisecond.
const MaxPermits = 1000

// AcquirePermit takes one of limit permits of the semaphore name, waiting
// as Acquire does while all are held: in the semaphore's queue, served in
// arrival order across clients. A permit is a Lock: its lease is renewed by
// the Client's renewal loop with every other lease, Done closes when it is
// lost, Release gives it back (to the first waiter, if any), and a holder
// that crashed frees its permit when its lease ends. Its Token is larger
// than the token of every permit (and every other acquisition) issued
// before for name.
//
// Every caller must use the same limit for one name while the semaphore is
// in use; a different limit gets an error wrapping ErrInvalidArgument (and
// ErrRejected). limit must be in [1, MaxPermits]. One name is one kind of
// lock: a name used as a mutex, an election or a read-write lock cannot be
// a semaphore at the same time (ErrRejected).
func (c *Client) AcquirePermit(ctx context.Context, name string, limit int, opts ...Option) (*Lock, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	return c.take(ctx, kindSemaphore, name, opts, true, func(le *lease) { le.args = &kindArgs{mode: "s", limit: limit} })
}

// TryAcquirePermit makes one attempt to take a permit of the semaphore
// name, as AcquirePermit, without waiting: if all limit permits are held or
// others wait, it returns an error wrapping ErrNotAcquired.
func (c *Client) TryAcquirePermit(ctx context.Context, name string, limit int, opts ...Option) (*Lock, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	return c.take(ctx, kindSemaphore, name, opts, false, func(le *lease) { le.args = &kindArgs{mode: "s", limit: limit} })
}

func checkLimit(limit int) error {
	if limit < 1 || limit > MaxPermits {
		return fmt.Errorf("%w: semaphore limit %d is outside [1, %d]", ErrInvalidArgument, limit, MaxPermits)
	}
	return nil
}
