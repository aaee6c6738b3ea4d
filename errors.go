package renewlock

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

var (
	// ErrNotAcquired is returned by TryAcquire when another holder has the
	// lock. It is never returned for a cancelled context or a Redis failure.
	ErrNotAcquired = errors.New("renewlock: not acquired: held by another owner")

	// ErrLeaseLost is wrapped by Lock.Err, Lock.Release and the error of Do
	// when the holder lost its lease before releasing it: a renewal found
	// another owner or no key, or renewals kept failing until the validity
	// deadline. The lock must be treated as gone the moment this is seen.
	ErrLeaseLost = errors.New("renewlock: lease lost")

	// ErrReleased is what Lock.Err returns after a successful Release.
	ErrReleased = errors.New("renewlock: lock released")

	// ErrClientClosed is returned by every call on a closed Client, and is what
	// Lock.Err wraps for a lock that was still held when its Client closed.
	ErrClientClosed = errors.New("renewlock: client closed")

	// ErrInvalidArgument is wrapped by every error about bad input: an empty
	// key, a nil Redis client, or an option value out of range. The message
	// names the value.
	ErrInvalidArgument = errors.New("renewlock: invalid argument")

	// ErrNotHeld is returned by Inspect and ForceRelease when nobody holds the
	// key.
	ErrNotHeld = errors.New("renewlock: not held")
)

// isReplyError reports whether err is an error reply from Redis, as opposed
// to a network error or a timeout after which the outcome is unknown.
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
