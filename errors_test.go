package renewlock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// aclUser creates the ACL user name (password "pw") with rules on srv and
// returns a go-redis client logged in as it.
func aclUser(t *testing.T, srv *redistest.Server, admin *redis.Client, name string, rules ...string) *redis.Client {
	t.Helper()
	args := []any{"ACL", "SETUSER", name, "reset", "on", ">pw"}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s %v: %v", name, rules, err)
	}
	return srv.Client(func(o *redis.Options) { o.Username, o.Password = name, "pw" })
}

// A blocking Acquire that Redis refuses for a reason retrying cannot fix
// fails at once (not when its ctx ends), with an error that says so.
func TestNonTransientErrorsFailFast(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := context.Background()

	for _, tc := range []struct {
		name  string
		rdb   func(t *testing.T) *redis.Client
		key   string
		perm  bool   // want ErrPermission too
		names string // the message contains this
	}{
		{"key outside the user's key patterns", func(t *testing.T) *redis.Client {
			return aclUser(t, srv, admin, "keys", "~other:*", "&*", "+@all")
		}, "k1", true, "NOPERM"},
		{"no write commands", func(t *testing.T) *redis.Client {
			return aclUser(t, srv, admin, "readonly", "~*", "&*", "+@all", "-@write")
		}, "k2", true, "NOPERM"},
		{"wrong password", func(t *testing.T) *redis.Client {
			aclUser(t, srv, admin, "badpw", "~*", "&*", "+@all")
			return srv.Client(func(o *redis.Options) { o.Username, o.Password = "badpw", "wrong" })
		}, "k3", true, "WRONGPASS"},
		{"key holds another type", func(t *testing.T) *redis.Client {
			if err := admin.Set(ctx, "renewlock:k4", "not a lock", 0).Err(); err != nil {
				t.Fatal(err)
			}
			return srv.Client()
		}, "k4", false, `"renewlock:k4" holds data that is not a renewlock lock`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.rdb(t))
			check := func(what string, err error, elapsed time.Duration) {
				t.Helper()
				if !errors.Is(err, renewlock.ErrRejected) || errors.Is(err, renewlock.ErrPermission) != tc.perm ||
					!strings.Contains(err.Error(), tc.names) {
					t.Fatalf("%s: err = %v; want ErrRejected, ErrPermission=%v, naming %q", what, err, tc.perm, tc.names)
				}
				if errors.Is(err, renewlock.ErrNotAcquired) || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s: err = %v also wraps ErrNotAcquired or a deadline", what, err)
				}
				if elapsed > 2*time.Second {
					t.Fatalf("%s: took %v; a non-transient error must fail at once", what, elapsed)
				}
			}
			actx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err := c.Acquire(actx, tc.key)
			check("Acquire", err, time.Since(start))
			start = time.Now()
			_, err = c.TryAcquire(actx, tc.key)
			check("TryAcquire", err, time.Since(start))
			start = time.Now()
			err = c.Do(actx, tc.key, func(context.Context, *renewlock.Lock) error { return nil })
			check("Do", err, time.Since(start))
		})
	}
}

// A renewal that Redis refuses (the user lost a right while holding the
// lock) can never succeed: the holder hears of the loss at once, with the
// cause, instead of at the validity deadline.
func TestRejectedRenewalIsALossAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	rdb := aclUser(t, srv, admin, "locker", "~*", "&*", "+@all")
	c := newClient(t, rdb, renewlock.WithTTL(3*time.Second), renewlock.WithRenewInterval(100*time.Millisecond))
	ctx := ctxT(t, 10*time.Second)
	l, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "locker", "-pexpire").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !closedWithin(l.Done(), time.Second) {
		t.Fatalf("Done still open %v after renewals became impossible (deadline is ~3 s away)", time.Since(start))
	}
	if err := l.Err(); !errors.Is(err, renewlock.ErrLeaseLost) || !errors.Is(err, renewlock.ErrPermission) {
		t.Fatalf("Err = %v, want ErrLeaseLost and ErrPermission", err)
	}
}

// A user who may not subscribe to its grant channel cannot wait: a
// blocking Acquire on a held key fails at once with ErrPermission naming
// the channel, instead of waiting for grants that cannot reach it.
// TryAcquire, which never waits, still works.
func TestWaitWithoutChannelRightFailsFast(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	rdb := aclUser(t, srv, admin, "nochan", "~renewlock:*", "resetchannels", "+@all")
	holder := newClient(t, admin)
	c := newClient(t, rdb)
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	if l, err := c.TryAcquire(ctx, key); err != nil {
		t.Fatalf("TryAcquire of a free key: %v", err)
	} else if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := holder.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(ctx)
	start := time.Now()
	_, err = c.Acquire(ctx, key)
	if !errors.Is(err, renewlock.ErrPermission) || !strings.Contains(err.Error(), "grant") {
		t.Fatalf("Acquire = %v, want ErrPermission naming the grant channel", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v; must fail at once", d)
	}
}
