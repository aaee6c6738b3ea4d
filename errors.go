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

	// ErrRejected is wrapped by an error that Redis returned and that
	// retrying cannot fix: an ACL denial, a failed authentication, a key of
	// the wrong type where a lock should be (WRONGTYPE), a script error. A
	// call that meets one fails at once instead of retrying until its
	// context ends; the message quotes Redis and says what to fix.
	// Transient errors (connection loss, timeouts, LOADING, BUSY, TRYAGAIN,
	// CLUSTERDOWN, MASTERDOWN, READONLY, OOM, too many clients) are retried
	// by Acquire and by the renewal loop until the context or the validity
	// deadline ends, and never wrap ErrRejected.
	ErrRejected = errors.New("renewlock: rejected by Redis")

	// ErrPermission is wrapped, together with ErrRejected, when Redis
	// refused for lack of rights: the ACL user may not run a command, touch
	// a key or publish on a channel that the lock needs (NOPERM), or
	// authentication failed (NOAUTH, WRONGPASS). The README's "Least
	// privilege" section lists the ACL a lock user needs.
	ErrPermission = errors.New("renewlock: permission denied by Redis")
)

// isReplyError reports whether err is an error reply from Redis, as opposed
// to a network error or a timeout after which the outcome is unknown.
func isReplyError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
