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
	"net"
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

// Defect 1: many goroutines of one Client contend for one key with tiny
// Acquire deadlines (0–600 µs) and release at once. However the grants and
// the give-ups interleave, once everyone has stopped the key must be free:
// no lease may be left that no *Lock refers to.
func TestGiveUpsLeaveNoOrphan(t *testing.T) {
	const ttl = 500 * time.Millisecond
	srv, rdb, c := setup(t, renewlock.WithTTL(ttl))
	other := newClient(t, srv.Client(), renewlock.WithTTL(ttl))
	for round := 0; round < 5; round++ {
		key := uniqueKey(t)
		stop := time.Now().Add(400 * time.Millisecond)
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; time.Now().Before(stop); i++ {
					d := time.Duration((g*7919+i*104729)%600) * time.Microsecond
					ctx, cancel := context.WithTimeout(context.Background(), d)
					l, err := c.Acquire(ctx, key)
					cancel()
					if err != nil {
						continue
					}
					rctx, rcancel := context.WithTimeout(context.Background(), time.Duration(i%3)*100*time.Microsecond)
					_ = l.Release(rctx)
					rcancel()
					if l.Err() == nil || errors.Is(l.Err(), renewlock.ErrLeaseLost) {
						t.Errorf("round %d: after Release, Err = %v", round, l.Err())
					}
				}
			}(g)
		}
		wg.Wait()
		// Releases whose ctx ended may still be on the wire; an interrupted
		// acquisition is cleaned up in the background. Neither takes long.
		// An orphan, renewed by c, would stay for good.
		free := false
		for end := time.Now().Add(ttl + time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if rdb.HGet(context.Background(), renewlock.DefaultKeyPrefix+key, "o").Val() == "" {
				free = true
				break
			}
		}
		if !free {
			pttl := rdb.PTTL(context.Background(), renewlock.DefaultKeyPrefix+key).Val()
			t.Fatalf("round %d: key still owned %v after everyone stopped (PTTL %v): an orphaned lease", round, ttl+time.Second, pttl)
		}
		l, err := other.TryAcquire(context.Background(), key)
		if err != nil {
			t.Fatalf("round %d: another client cannot take the free key: %v", round, err)
		}
		_ = l.Release(context.Background())
	}
}

// slowSubscribeDialer returns a Dialer whose connections hold back the
// first SUBSCRIBE they write by delay, so that a subscription is confirmed
// late.
func slowSubscribeDialer(delay time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var once sync.Once
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &slowSubscribeConn{Conn: conn, once: &once, delay: delay}, nil
	}
}

type slowSubscribeConn struct {
	net.Conn
	once  *sync.Once
	delay time.Duration
}

func (c *slowSubscribeConn) Write(p []byte) (int, error) {
	if bytes.Contains(bytes.ToLower(p), []byte("$9\r\nsubscribe\r\n")) {
		c.once.Do(func() { time.Sleep(c.delay) })
	}
	return c.Conn.Write(p)
}

// Defect 4: the first waiter of a Client gives up before the Client's
// subscription is confirmed, and the key is released meanwhile. The next
// waiter must not sleep until the holder's lease would have expired.
func TestWaiterAfterEarlyGiveUpIsWoken(t *testing.T) {
	const ttl = 5 * time.Second
	srv, _, holderClient := setup(t, renewlock.WithTTL(ttl))
	rdb := srv.Client(func(o *redis.Options) { o.Dialer = slowSubscribeDialer(300 * time.Millisecond) })
	c := newClient(t, rdb, renewlock.WithTTL(ttl))
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	held, err := holderClient.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// A waits only briefly: it gives up while the SUBSCRIBE is held back.
	actx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	aDone := make(chan error, 1)
	go func() { _, err := c.Acquire(actx, key); aDone <- err }()
	time.Sleep(10 * time.Millisecond)
	type result struct {
		l   *renewlock.Lock
		err error
	}
	got := make(chan result, 1)
	start := time.Now()
	go func() {
		l, err := c.Acquire(ctx, key)
		got <- result{l, err}
	}()
	if err := <-aDone; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A: %v, want a deadline", err)
	}
	time.Sleep(100 * time.Millisecond) // still before the subscription is confirmed
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("B acquired %v after it started", time.Since(start).Round(time.Millisecond))
		_ = r.l.Release(ctx)
	case <-time.After(2 * time.Second):
		t.Fatalf("B still waiting %v after the release (TTL %v): the wake-up was missed", time.Since(start).Round(time.Millisecond), ttl)
	}
}

// An acquisition whose reply arrives after the validity deadline it would
// set (Redis or the network stalled longer than the lease) must not hand
// out a lock whose Done should already be closed: Acquire and TryAcquire
// ask again, and return a lock valid from the new send.
func TestLateReplyDoesNotHandOutADeadLock(t *testing.T) {
	const ttl = 300 * time.Millisecond
	for _, name := range []string{"Acquire", "TryAcquire"} {
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			var delayed atomic.Bool
			rdb.AddHook(&interceptHook{single: func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
				err := next(ctx, cmd)
				if err == nil && scriptName(cmd) == "acquire" && delayed.CompareAndSwap(false, true) {
					time.Sleep(ttl + 100*time.Millisecond) // the reply is late
				}
				return err
			}})
			c := newClient(t, rdb, renewlock.WithTTL(ttl))
			ctx := ctxT(t, 10*time.Second)
			var l *renewlock.Lock
			var err error
			if name == "Acquire" {
				l, err = c.Acquire(ctx, uniqueKey(t))
			} else {
				l, err = c.TryAcquire(ctx, uniqueKey(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			if closedWithin(l.Done(), 2*ttl) {
				t.Fatalf("Done closed right after %s returned: %v", name, l.Err())
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A waiter that died in the queue is granted the lock (its place has not
// lapsed yet): the lock must pass on when its place would have ended — at
// most one TTL after the waiter's last sign of life — not one TTL after
// the grant.
func TestGrantToDeadWaiterEndsWithItsPlace(t *testing.T) {
	const ttl = time.Second
	srv, _, holderC := setup(t, renewlock.WithTTL(ttl))
	deadC := newClient(t, srv.Client(), renewlock.WithTTL(ttl))
	liveC := newClient(t, srv.Client(), renewlock.WithTTL(ttl))
	ops := newClient(t, srv.Client())
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	held, err := holderC.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = deadC.Acquire(ctx, key) }()
	waitFor(t, 5*time.Second, "the doomed waiter in the queue", func() bool {
		info, err := ops.Inspect(ctx, key)
		return err == nil && info.Waiters == 1
	})
	got := make(chan time.Time, 1)
	go func() {
		l, err := liveC.Acquire(ctx, key)
		if err == nil {
			got <- time.Now()
			_ = l.Release(context.Background())
		}
	}()
	waitFor(t, 5*time.Second, "the live waiter in the queue", func() bool {
		info, err := ops.Inspect(ctx, key)
		return err == nil && info.Waiters == 2
	})
	renewlock.CrashForTest(deadC)
	crashed := time.Now()
	time.Sleep(ttl / 2)
	if err := held.Release(ctx); err != nil { // granted to the dead waiter
		t.Fatal(err)
	}
	select {
	case at := <-got:
		d := at.Sub(crashed)
		t.Logf("the live waiter got the lock %v after the other waiter died (TTL %v)", d.Round(time.Millisecond), ttl)
		if d > ttl+300*time.Millisecond {
			t.Fatalf("the lock stayed with the dead waiter for %v after it died: longer than one TTL", d)
		}
	case <-time.After(3 * ttl):
		t.Fatal("the live waiter never got the lock")
	}
}
