package renewlock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// closeTimeout bounds how long Close waits for Redis: releasing held locks
// and the calls in flight. minCloseWait is what each wait gets even when the
// bound is used up, for work that needs no network.
const (
	closeTimeout = 5 * time.Second
	minCloseWait = 50 * time.Millisecond
)

// A Client takes locks on one Redis deployment (a single server, a Sentinel
// group or a Cluster, through the go-redis client given to New). It owns the
// background work for all its locks: one renewal loop and one subscription
// connection, shared by every key. A Client is safe for concurrent use;
// create one per process and Close it on shutdown.
type Client struct {
	rdb redis.UniversalClient
	co  *coalescer // acquire and release calls
	cfg config
	eng *engine // leases: renewal, grants
	hub *hub    // the subscription that carries grants

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool           // Close has started waiting for wg
	wg     sync.WaitGroup // clean-up goroutines

	closeOnce sync.Once
	closeErr  error
}

// New returns a Client that takes locks through rdb, with opts as the
// defaults for every acquisition. It does not contact Redis. rdb stays owned
// by the caller: Close does not close it.
func New(rdb redis.UniversalClient, opts ...Option) (*Client, error) {
	if rdb == nil || isNilPointer(rdb) {
		return nil, fmt.Errorf("%w: nil Redis client", ErrInvalidArgument)
	}
	if _, ring := rdb.(*redis.Ring); ring {
		// A Ring spreads keys over independent servers: a grant would be
		// published on the shard of the lock, not of the subscription, and
		// one renewal script would touch keys of several shards.
		return nil, fmt.Errorf("%w: *redis.Ring is not supported (its shards share no pub/sub and no scripts); use a redis.Client per server, or a Redis Cluster", ErrInvalidArgument)
	}
	cfg := defaultConfig()
	cfg.apply(opts)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, co: newCoalescer(rdb), cfg: cfg}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.eng = newEngine(c)
	c.hub = newHub(rdb, c.eng, cfg.prefix)
	return c, nil
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// prepare checks the arguments of one acquisition and resolves its options.
func (c *Client) prepare(ctx context.Context, key string, opts []Option) (*config, error) {
	if ctx == nil {
		return nil, fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	if key == "" {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	cfg := &c.cfg // validated by New, never changed
	if len(opts) > 0 {
		own := c.cfg
		own.apply(opts)
		if err := own.validate(); err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
		cfg = &own
	}
	if c.ctx.Err() != nil {
		return nil, ErrClientClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("renewlock: acquire %q: %w", key, err)
	}
	return cfg, nil
}

// TryAcquire makes one attempt to take key. If another holder has it, or
// others are queued for it, it returns an error wrapping ErrNotAcquired at
// once, without queueing. A Redis failure or a cancelled ctx is returned as
// such, never as ErrNotAcquired.
func (c *Client) TryAcquire(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	return c.take(ctx, kindMutex, key, opts, false, nil)
}

// Acquire takes key, waiting as long as ctx allows while another holder has
// it. A waiter joins the lock's queue in Redis and is served in arrival
// order, across all clients: a release hands the lock straight to the first
// waiter, and the waiter's Client hears of it at once (pub/sub); a holder
// that crashed passes the lock on when its lease ends. Transient Redis
// errors are retried with backoff; one that retrying cannot fix (see
// ErrRejected) is returned at once. When ctx ends first, the error wraps
// ctx.Err() and nothing is left behind in Redis: the place in the queue is
// given up, and a lock granted meanwhile is passed on.
func (c *Client) Acquire(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	return c.take(ctx, kindMutex, key, opts, true, nil)
}

// take runs one acquisition of a lease of kind on key — blocking: waiting
// in the queue, else one attempt — for every primitive. setup fills in
// what the kind needs (mode, limit, value).
func (c *Client) take(ctx context.Context, kind *lockKind, key string, opts []Option, blocking bool, setup func(*lease)) (*Lock, error) {
	cfg, err := c.prepare(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	le := c.eng.newLease(kind, key, cfg)
	if setup != nil {
		setup(le)
	}
	run := c.tryAcquire
	if blocking {
		run = c.wait
	}
	if o := cfg.observer; o != nil {
		start := time.Now()
		l, err := run(ctx, le)
		ev := AcquireEvent{Ctx: ctx, Key: key, Start: start, Duration: time.Since(start), Queued: le.joins > 0, Err: err}
		if l != nil {
			ev.Token = l.token
			l.mu.Lock()
			l.acquired = start.Add(ev.Duration).UnixNano()
			l.mu.Unlock()
		}
		if o.Acquired != nil {
			o.Acquired(ev)
		}
		return l, err
	}
	return run(ctx, le)
}

// maxStaleTries bounds how often TryAcquire asks again when each reply
// comes after the deadline it would set (Redis slower than the lease).
const maxStaleTries = 3

// tryAcquire makes one attempt for le, never queueing.
func (c *Client) tryAcquire(ctx context.Context, le *lease) (*Lock, error) {
	key := le.lock.key
	for try := 1; ; try++ {
		sent := time.Now()
		res, pending, err := c.attempt(ctx, le, false, c.hub.channel)
		switch {
		case pending: // the reply goes to a clean-up
			return nil, fmt.Errorf("renewlock: acquire %q: %w", key, err)
		case err != nil:
			if !isReplyError(err) && !isRejected(err) {
				c.cleanup(le) // the outcome is unknown
			}
			return nil, fmt.Errorf("renewlock: acquire %q: %w", key, err)
		case !res.taken:
			return nil, fmt.Errorf("%w: %s %q, first lease ends within %v", ErrNotAcquired, le.kind.name, key, res.left+time.Millisecond)
		}
		switch c.eng.hold(le, res.token, sent) {
		case holdOK:
			return le.lock, nil
		case holdClosed:
			c.cleanup(le)
			return nil, ErrClientClosed
		}
		// holdStale: the reply came too late to use; ask again (the
		// script renews a lock that is ours), a few times, until ctx ends.
		if err := ctx.Err(); err != nil {
			c.cleanup(le)
			return nil, fmt.Errorf("renewlock: acquire %q: %w", key, err)
		}
		if try == maxStaleTries {
			c.cleanup(le)
			return nil, fmt.Errorf("renewlock: acquire %q: Redis answered %d times after the lease's validity (%v) would have run out; nothing is held",
				key, try, le.cfg.validity())
		}
	}
}

// cleanup releases (owner-checked) whatever Redis holds of le — a lock an
// interrupted call took, or a place in the queue — in the background,
// bounded by one TTL. A lock it releases passes to the next waiter, who is
// told by pub/sub. After Close it runs in the caller, since Close no longer
// waits for it.
func (c *Client) cleanup(le *lease) {
	run := func() {
		ctx, cancel := context.WithTimeout(context.Background(), min(le.cfg.ttl, closeTimeout))
		defer cancel()
		_ = le.kind.release().Run(ctx, c.rdb, []string{le.rkey}, le.id, "").Err()
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		run()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		run()
	}()
}

// Do takes key (waiting as Acquire does), runs fn, and releases the lock,
// even if fn panics. The ctx passed to fn is cancelled the moment the lease
// is lost, with context.Cause wrapping ErrLeaseLost; fn should stop then. The
// release runs on a fresh context bounded by one TTL, so it happens even when
// ctx was cancelled. The returned error joins fn's error and the release's:
// errors.Is(err, ErrLeaseLost) reports a loss during fn.
func (c *Client) Do(ctx context.Context, key string, fn func(ctx context.Context, l *Lock) error, opts ...Option) (err error) {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidArgument)
	}
	l, err := c.Acquire(ctx, key, opts...)
	if err != nil {
		return err
	}
	lctx, cancel := l.Context(ctx)
	defer func() {
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), l.le.cfg.ttl)
		defer rcancel()
		if rerr := l.Release(rctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	return fn(lctx, l)
}

// Close stops all background work of the Client and releases every lock it
// still holds (owner-checked, one round trip). Each such lock's Done is
// closed at once, before anything is sent, and its Err is ErrClientClosed;
// blocked Acquire calls return ErrClientClosed. Close returns within a few
// seconds (closeTimeout) even if Redis does not answer: a lock it could not
// release expires after its TTL, and a call that go-redis keeps waiting on
// (a client without read timeout) ends when go-redis gives up on it. Close
// does not close the Redis client. It returns the error of the final
// release, if any, and is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		deadline := time.Now().Add(closeTimeout)
		c.cancel()
		// The holders hear first: nothing below may delay Done.
		held, releasing, waiting := c.eng.drain()
		for _, le := range held {
			le.lock.finish(ErrClientClosed, true)
		}
		for _, le := range releasing {
			// Their Release calls are under way and report the outcome;
			// the renewal loop that watched their deadline stops now.
			le.lock.finish(ErrClientClosed, false)
		}
		c.hub.close()
		// Blocked Acquire calls return ErrClientClosed (c.ctx); their places
		// in the queues are given up below, with the held locks.
		// Release first, then wait for what is still in flight: a renewal
		// that lands after the release finds the key not ours.
		var err error
		relErr := make(chan error, 1)
		relStart := time.Now()
		if waitUntil(deadline, func() { relErr <- c.releaseAll(held, waiting, deadline) }) {
			err = <-relErr
		} else {
			err = fmt.Errorf("renewlock: close: releasing %d locks: Redis did not answer within %v; they expire after their TTL",
				len(held), closeTimeout)
		}
		observeClose(held, relStart, err)
		var stuck []string
		if !waitUntil(deadline, c.eng.stopLoop) {
			stuck = append(stuck, "renewals")
		}
		if !waitUntil(deadline, c.co.close) {
			stuck = append(stuck, "acquire and release calls")
		}
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if !waitUntil(deadline, c.wg.Wait) {
			stuck = append(stuck, "clean-ups of interrupted calls")
		}
		if len(stuck) > 0 {
			err = errors.Join(err, fmt.Errorf("renewlock: close: Redis did not answer within %v; still in flight: %s (they end when go-redis gives up on them)",
				closeTimeout, strings.Join(stuck, ", ")))
		}
		c.closeErr = err
	})
	return c.closeErr
}

// waitUntil runs f and waits for it until deadline, or at least
// minCloseWait. It reports whether f returned in time; if not, f goes on in
// the background.
func waitUntil(deadline time.Time, f func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	t := time.NewTimer(max(time.Until(deadline), minCloseWait))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// releaseAll releases the held locks and leaves the queues of the waiting
// leases, in one pipelined round trip, for Close.
func (c *Client) releaseAll(held, waiting []*lease, deadline time.Time) error {
	all := append(held[:len(held):len(held)], waiting...)
	if len(all) == 0 {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmds := evalPipelined(ctx, c.rdb, len(all), func(i int) (*redis.Script, []string, []any) {
		return all[i].kind.release(), []string{all[i].rkey}, []any{all[i].id, ""}
	})
	var err error
	for i, cmd := range cmds {
		if e := cmd.Err(); e != nil && err == nil {
			err = classify(e, all[i].rkey)
		}
	}
	if err != nil {
		return fmt.Errorf("renewlock: close: releasing %d locks: %w", len(held), err)
	}
	for _, le := range held {
		l := le.lock
		l.mu.Lock()
		l.released, l.releaseErr = true, ErrClientClosed
		l.mu.Unlock()
	}
	return nil
}

// observeClose tells each held lock's Observer that Close released it.
func observeClose(held []*lease, start time.Time, err error) {
	for _, le := range held {
		if o := le.cfg.observer; o != nil && o.Released != nil {
			l := le.lock
			ev := ReleaseEvent{Ctx: context.Background(), Key: l.key, Token: l.token, Start: start,
				Duration: time.Since(start), ByClose: true, Err: err}
			if at := l.acquiredAt(); !at.IsZero() {
				ev.Held = start.Sub(at)
			}
			o.Released(ev)
		}
	}
}

// newOwnerID returns 128 random bits from crypto/rand, hex-encoded.
func newOwnerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}
