package chaos

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

var quietLog = renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

func newLockClient(t *testing.T, rdb redis.UniversalClient, opts ...renewlock.Option) *renewlock.Client {
	t.Helper()
	c, err := renewlock.New(rdb, append([]renewlock.Option{quietLog}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wantReplyError checks that err is a Redis error reply with prefix, and
// neither "not acquired" nor a lease loss: the caller must be able to tell
// "Redis refused" from "someone else has it".
func wantReplyError(t *testing.T, what string, err error, prefix string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("%s: no error, want %s", what, prefix)
	case errors.Is(err, renewlock.ErrNotAcquired), errors.Is(err, renewlock.ErrLeaseLost):
		t.Fatalf("%s: %v: a %s reply reported as a lock outcome", what, err, prefix)
	case !strings.Contains(err.Error(), prefix):
		t.Fatalf("%s: %v, want an error mentioning %s", what, err, prefix)
	}
}

// pollUntil polls cond every 10 ms until it holds or d passes.
func pollUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startReplica(t *testing.T, primary *redistest.Server) *redistest.Server {
	t.Helper()
	r := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()), "--repl-diskless-sync-delay", "0")
	rc := r.Client()
	pollUntil(t, 10*time.Second, "replica link up", func() bool {
		info, _ := rc.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	return r
}

// READONLY: a client pointed at a replica, or left on a primary that was
// demoted by a failover.
func TestErrorReplyReadOnly(t *testing.T) {
	// No diskless-sync delay: the replica is in sync at once.
	primary := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	replica := startReplica(t, primary)
	ctx := testCtx(t, 20*time.Second)

	t.Run("acquire on a replica", func(t *testing.T) {
		c := newLockClient(t, replica.Client())
		_, err := c.TryAcquire(ctx, "ro")
		wantReplyError(t, "TryAcquire", err, "READONLY")
		actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err = c.Acquire(actx, "ro")
		// Acquire retries Redis errors until ctx ends. The error wraps the
		// deadline; it names the last READONLY only if the final attempt
		// was not itself cut short by the deadline (see the report).
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, renewlock.ErrNotAcquired) {
			t.Fatalf("Acquire on a replica = %v, want the context deadline", err)
		}
		t.Logf("Acquire on a replica: %v", err)
	})

	t.Run("held lock when its primary is demoted", func(t *testing.T) {
		const ttl = 500 * time.Millisecond
		c := newLockClient(t, primary.Client(), renewlock.WithTTL(ttl))
		l, err := c.TryAcquire(ctx, "failover")
		if err != nil {
			t.Fatal(err)
		}
		// Promote the replica and demote the primary under the holder.
		if err := replica.Client().ReplicaOf(ctx, "NO", "ONE").Err(); err != nil {
			t.Fatal(err)
		}
		demoted := time.Now()
		if err := primary.Client().ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(replica.Port())).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.Done():
		case <-time.After(2 * ttl):
			t.Fatalf("holder not told within %v that its renewals fail with READONLY", 2*ttl)
		}
		t.Logf("told %v after the demotion: %v", time.Since(demoted), l.Err())
		if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
			t.Fatalf("Err = %v, want ErrLeaseLost", l.Err())
		}
		if err := l.Release(ctx); err == nil {
			t.Fatalf("Release on a demoted primary returned nil")
		}
	})
}

// LOADING: Redis answers -LOADING while it loads its data set (here DEBUG
// RELOAD with a per-key delay, so loading lasts about a second).
func TestErrorReplyLoading(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	admin := srv.Client(func(o *redis.Options) { o.ReadTimeout = 30 * time.Second; o.MaxRetries = -1 })
	ctx := testCtx(t, 30*time.Second)
	if err := admin.Do(ctx, "DEBUG", "POPULATE", "10000").Err(); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"key-load-delay", "100"}, {"loading-process-events-interval-bytes", "1024"}} {
		if err := admin.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A lease longer than the loading survives it: renewals that meet
	// LOADING are retried until the validity deadline.
	c := newLockClient(t, srv.Client(), renewlock.WithTTL(5*time.Second))
	l, err := c.TryAcquire(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 1)
	go func() { reloaded <- admin.Do(ctx, "DEBUG", "RELOAD").Err() }()

	probe := srv.Client(func(o *redis.Options) { o.MaxRetries = -1 })
	pollUntil(t, 5*time.Second, "server loading", func() bool {
		return redis.HasErrorPrefix(probe.Ping(ctx).Err(), "LOADING")
	})
	_, err = c.TryAcquire(ctx, "during-loading")
	wantReplyError(t, "TryAcquire while loading", err, "LOADING")
	if err := <-reloaded; err != nil {
		t.Fatalf("DEBUG RELOAD: %v", err)
	}
	l2, err := c.TryAcquire(ctx, "after-loading")
	if err != nil {
		t.Fatalf("TryAcquire after loading: %v", err)
	}
	if l.Err() != nil {
		t.Fatalf("lock lost across a short LOADING period: %v", l.Err())
	}
	for _, x := range []*renewlock.Lock{l, l2} {
		if err := x.Release(ctx); err != nil {
			t.Fatalf("Release after loading: %v", err)
		}
	}
}

// OOM: with maxmemory reached and noeviction, taking a lock (HSET) is
// refused, but held locks keep being renewed (PEXPIRE is allowed) and can be
// released, so an OOM episode never takes a lock away from its holder.
func TestErrorReplyOOM(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := testCtx(t, 20*time.Second)
	const ttl = 300 * time.Millisecond
	c := newLockClient(t, srv.Client(), renewlock.WithTTL(ttl))
	l, err := c.TryAcquire(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = c.TryAcquire(ctx, "new")
	wantReplyError(t, "TryAcquire under OOM", err, "OOM")
	// Several renew intervals (TTL/3) pass under OOM.
	select {
	case <-l.Done():
		t.Fatalf("held lock lost under OOM: %v", l.Err())
	case <-time.After(3 * ttl):
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release under OOM: %v", err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	l2, err := c.TryAcquire(ctx, "new")
	if err != nil {
		t.Fatalf("TryAcquire after OOM ended: %v", err)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// NOSCRIPT: after SCRIPT FLUSH (or a restart) every script is loaded again
// transparently: acquire, renew and release all succeed.
func TestErrorReplyNoScript(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := testCtx(t, 20*time.Second)
	const ttl = 300 * time.Millisecond
	c := newLockClient(t, srv.Client(), renewlock.WithTTL(ttl))
	flush := func() {
		t.Helper()
		if err := admin.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	l, err := c.TryAcquire(ctx, "warm") // loads the scripts once
	if err != nil {
		t.Fatal(err)
	}
	flush()
	l2, err := c.TryAcquire(ctx, "after-flush")
	if err != nil {
		t.Fatalf("TryAcquire after SCRIPT FLUSH: %v", err)
	}
	for range 3 { // a flush before each of several renewals
		flush()
		select {
		case <-l.Done():
			t.Fatalf("lock lost after SCRIPT FLUSH: %v", l.Err())
		case <-time.After(ttl / 2):
		}
	}
	flush()
	for _, x := range []*renewlock.Lock{l, l2} {
		if err := x.Release(ctx); err != nil {
			t.Fatalf("Release after SCRIPT FLUSH: %v", err)
		}
	}
}
