package renewlock_test

// Tests for the defects of issue 8 ("hardening"): each reproduces, through
// the public API, an interleaving or an input that once cost a lock, a
// deadline or a false alarm.

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// scriptName says which renewlock script cmd runs ("acquire", "release",
// "renew"), or "" for any other command.
func scriptName(cmd redis.Cmder) string {
	args := cmd.Args()
	if len(args) < 2 {
		return ""
	}
	sha, _ := args[1].(string)
	switch strings.ToLower(cmd.Name()) {
	case "evalsha":
	case "eval":
		sum := sha1.Sum([]byte(sha))
		sha = hex.EncodeToString(sum[:])
	default:
		return ""
	}
	for name, s := range renewlock.ScriptSHA {
		if s == sha {
			return name
		}
	}
	return ""
}

// interceptHook lets a test act around single commands and pipelines of a
// go-redis client: single(cmd, next) and pipeline(cmds, next) replace the
// call; nil passes it through.
type interceptHook struct {
	single   func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error
	pipeline func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error
}

func (h *interceptHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *interceptHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	if h.single == nil {
		return next
	}
	return func(ctx context.Context, cmd redis.Cmder) error { return h.single(ctx, cmd, next) }
}
func (h *interceptHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	if h.pipeline == nil {
		return next
	}
	return func(ctx context.Context, cmds []redis.Cmder) error { return h.pipeline(ctx, cmds, next) }
}

// Defect 3: a renewal in flight while the release runs in Redis first comes
// back "not ours". That is the release's own doing, not a loss: Release
// must return nil and Err must be ErrReleased.
func TestReleaseRacingRenewalIsNoLoss(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	released := make(chan struct{})
	var releasedOnce sync.Once
	var renewalsHeld atomic.Int64
	rdb.AddHook(&interceptHook{
		// The release runs in Redis, then its reply is held back while the
		// renewal below goes out and comes back.
		single: func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
			err := next(ctx, cmd)
			if err == nil && scriptName(cmd) == "release" { // not a NOSCRIPT try
				releasedOnce.Do(func() { close(released) })
				time.Sleep(100 * time.Millisecond)
			}
			return err
		},
		// A renewal waits until the release has run in Redis.
		pipeline: func(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
			if len(cmds) > 0 && scriptName(cmds[0]) == "renew" {
				renewalsHeld.Add(1)
				<-released
			}
			return next(ctx, cmds)
		},
	})
	c := newClient(t, rdb, renewlock.WithTTL(time.Second), renewlock.WithRenewInterval(20*time.Millisecond))
	ctx := ctxT(t, 10*time.Second)
	l, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until a renewal is on its way (held by the hook).
	for renewalsHeld.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v, want nil (the renewal's 'not ours' came from this release)", err)
	}
	if err := l.Err(); err != renewlock.ErrReleased {
		t.Fatalf("Err = %v, want ErrReleased", err)
	}
}

// Defect 2: Close while Redis does not answer must close every Done at once,
// not after its network release has given up; and Close itself must return
// within its bound even when go-redis has no read timeout.
func TestCloseClosesDoneAtOnceWhenRedisIsPaused(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  func(*redis.Options)
	}{
		{"default timeouts", func(*redis.Options) {}},
		{"no read timeout", func(o *redis.Options) { o.ReadTimeout = -1; o.WriteTimeout = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client(tc.opt)
			c, err := renewlock.New(rdb, quiet, renewlock.WithTTL(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t, 10*time.Second)
			var locks []*renewlock.Lock
			for i := 0; i < 3; i++ {
				l, err := c.Acquire(ctx, uniqueKey(t))
				if err != nil {
					t.Fatal(err)
				}
				locks = append(locks, l)
			}
			srv.Pause()
			resumed := false
			defer func() {
				if !resumed {
					srv.Resume()
				}
			}()
			start := time.Now()
			closed := make(chan error, 1)
			go func() { closed <- c.Close() }()
			for i, l := range locks {
				if !closedWithin(l.Done(), 200*time.Millisecond) {
					t.Fatalf("lock %d: Done still open %v after Close began", i, time.Since(start))
				}
				if !errors.Is(l.Err(), renewlock.ErrClientClosed) {
					t.Fatalf("lock %d: Err = %v, want ErrClientClosed", i, l.Err())
				}
			}
			select {
			case err := <-closed:
				if err == nil {
					t.Fatalf("Close = nil with Redis paused, want an error saying the release did not happen")
				}
				t.Logf("Close returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
			case <-time.After(8 * time.Second):
				t.Fatalf("Close still blocked after %v", time.Since(start))
			}
			srv.Resume() // the calls go-redis still waits on end now
			resumed = true
		})
	}
}

// Defect 8: a second Release after one of unknown outcome (the reply was
// lost, the release had run) finds the key not ours: the lock is released
// either way, so it returns nil, not a bare ErrReleased.
func TestReleaseAgainAfterUnknownOutcome(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	var lose atomic.Bool
	lose.Store(true)
	errLost := errors.New("reply lost (injected)")
	rdb.AddHook(&interceptHook{single: func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		err := next(ctx, cmd)
		if err == nil && scriptName(cmd) == "release" && lose.CompareAndSwap(true, false) {
			cmd.SetErr(errLost)
			return errLost
		}
		return err
	}})
	c := newClient(t, rdb)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); !errors.Is(err, errLost) || errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("first Release = %v, want the injected error and no ErrLeaseLost", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second Release = %v, want nil (the first release went through)", err)
	}
	if _, err := c.Inspect(ctx, key); !errors.Is(err, renewlock.ErrNotHeld) {
		t.Fatalf("Inspect after release: %v, want ErrNotHeld", err)
	}
}

// Defect 8: each Context call on a long-held lock must not leave anything
// behind once its cancel function is called.
func TestLockContextFreesItsHook(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 30*time.Second)
	l, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for i := 0; i < 1000; i++ { // warm up
		_, cancel := l.Context(ctx)
		cancel()
	}
	before := heap()
	const n = 100_000
	for i := 0; i < n; i++ {
		_, cancel := l.Context(ctx)
		cancel()
	}
	after := heap()
	if grew := int64(after) - int64(before); grew > 2<<20 {
		t.Fatalf("heap grew by %d bytes over %d Context calls (%d B each): cancelled contexts are kept", grew, n, grew/n)
	}
	// And it still works.
	lctx, cancel := l.Context(ctx)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lctx.Done():
		if !errors.Is(context.Cause(lctx), renewlock.ErrReleased) {
			t.Fatalf("cause = %v, want ErrReleased", context.Cause(lctx))
		}
	case <-time.After(time.Second):
		t.Fatal("Context not cancelled by Release")
	}
}

// Defect 8: renewal failures are logged to the logger of the lock
// (WithLogger per call), not the Client's.
func TestRenewalFailuresUseTheLocksLogger(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	hook := &faultHook{}
	rdb.AddHook(hook)
	var clientLog, lockLog syncBuffer
	c := newClient(t, rdb, renewlock.WithLogger(slog.New(slog.NewTextHandler(&clientLog, nil))))
	ctx := ctxT(t, 10*time.Second)
	l, err := c.Acquire(ctx, uniqueKey(t), renewlock.WithTTL(time.Second),
		renewlock.WithLogger(slog.New(slog.NewTextHandler(&lockLog, nil))))
	if err != nil {
		t.Fatal(err)
	}
	hook.failing.Store(true)
	time.Sleep(600 * time.Millisecond) // ≥ one failed renewal (interval 333 ms)
	hook.failing.Store(false)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lockLog.String(), "renewal failed") {
		t.Fatalf("lock's logger got %q, want the renewal failure", lockLog.String())
	}
	if clientLog.String() != "" {
		t.Fatalf("client's logger got %q, want nothing", clientLog.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Defect 7: a Ring is refused at New with a clear error.
func TestRingIsRejected(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	_, err := renewlock.New(ring)
	if !errors.Is(err, renewlock.ErrInvalidArgument) || !strings.Contains(err.Error(), "Ring") {
		t.Fatalf("New(Ring) = %v, want ErrInvalidArgument naming the Ring", err)
	}
}
