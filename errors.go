package renewlock

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// A rejectedError is a Redis error that retrying cannot fix. It wraps
// ErrRejected, ErrPermission for a denial, and the error from Redis.
type rejectedError struct {
	err  error  // as returned by go-redis
	perm bool   // a permission or authentication problem
	arg  bool   // the caller's arguments disagree with the lock (a limit)
	hint string // what to fix
}

func (e *rejectedError) Error() string {
	what := "rejected by Redis"
	if e.perm {
		what = "permission denied by Redis"
	}
	return fmt.Sprintf("%s: %v (%s)", what, e.err, e.hint)
}

func (e *rejectedError) Unwrap() []error {
	switch {
	case e.perm:
		return []error{ErrRejected, ErrPermission, e.err}
	case e.arg:
		return []error{ErrRejected, ErrInvalidArgument, e.err}
	}
	return []error{ErrRejected, e.err}
}

// Reply prefixes of Redis errors that heal by themselves: a server loading
// its data set, busy with a script, between cluster states, out of memory
// for now, a replica during a failover, or out of client slots.
var transientPrefixes = []string{
	"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY",
	"OOM", "NOREPLICAS", "MISCONF", "MOVED", "ASK", "NOSCRIPT",
	"ERR max number of clients",
}

// Texts of a permission problem: ACL denials (NOPERM, and inside a script
// Redis 7.0's "ERR The user executing the script can't …") and failed
// authentication.
var permissionMarkers = []string{
	"NOPERM", "NOAUTH", "WRONGPASS", "can't run this command",
	"can't access at least one of the keys", "can't publish to the channel",
	"AUTH <password> called without any password", "invalid username-password",
}

// classify turns err, a failure of a call to Redis about the Redis key
// rkey, into a *rejectedError if retrying cannot fix it, and returns it
// unchanged if it is transient: a network error, a timeout, a context
// error, or a reply that heals (transientPrefixes). A reply Redis gives
// for lack of rights wraps ErrPermission; any other reply error is taken
// as permanent, since retrying a command that Redis refuses is blind.
func classify(err error, rkey string) error {
	if err == nil {
		return nil
	}
	var rej *rejectedError
	if errors.As(err, &rej) {
		return err
	}
	if errors.Is(err, redis.ErrClosed) {
		return &rejectedError{err: err, hint: "the go-redis client given to renewlock.New was closed; close the renewlock Client first"}
	}
	if !isReplyError(err) {
		return err
	}
	msg := err.Error()
	for _, m := range permissionMarkers {
		if strings.Contains(msg, m) {
			return &rejectedError{err: err, perm: true,
				hint: "the Redis user needs the commands, keys and channels listed in the renewlock README, section \"Least privilege\""}
		}
	}
	for _, p := range transientPrefixes {
		if strings.HasPrefix(msg, p) {
			return err
		}
	}
	hint := "a renewlock script failed in Redis; renewlock needs Redis ≥ 7.0 with Lua scripting enabled"
	switch {
	case strings.Contains(msg, "renewlock: limit mismatch"):
		return &rejectedError{err: err, arg: true, hint: "every caller must use the same limit for one semaphore"}
	case strings.HasPrefix(msg, "WRONGTYPE renewlock:"):
		hint = "one name is one kind of lock; use another name"
	case strings.HasPrefix(msg, "WRONGTYPE"):
		hint = fmt.Sprintf("the Redis key %q holds data that is not a renewlock lock; use another key or key prefix", rkey)
	}
	return &rejectedError{err: err, hint: hint}
}

// isRejected reports whether err is one that retrying cannot fix.
func isRejected(err error) bool { return errors.Is(err, ErrRejected) }
