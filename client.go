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
	rdb   redis.UniversalClient
	co    *coalescer // acquire and release calls
	cfg   config
	renew *renewer
	hub   *waitHub

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
		// A Ring spreads keys over independent servers: a release would
		// notify only the subscribers of its own shard, and one renewal
		// script would touch keys of several shards.
		return nil, fmt.Errorf("%w: *redis.Ring is not supported (its shards share no pub/sub and no scripts); use a redis.Client per server, or a Redis Cluster", ErrInvalidArgument)
	}
	cfg := defaultConfig()
	cfg.apply(opts)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, co: newCoalescer(rdb), cfg: cfg, hub: newWaitHub(rdb)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.renew = newRenewer(c)
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
	cfg := c.cfg
	cfg.apply(opts)
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("key %q: %w", key, err)
	}
	if c.ctx.Err() != nil {
		return nil, ErrClientClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("renewlock: acquire %q: %w", key, err)
	}
	return &cfg, nil
}

// TryAcquire makes one attempt to take key. If another holder has it, it
// returns an error wrapping ErrNotAcquired at once. A Redis failure or a
// cancelled ctx is returned as such, never as ErrNotAcquired.
func (c *Client) TryAcquire(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	cfg, err := c.prepare(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	l, wait, err := c.try(ctx, key, cfg, "")
	switch {
	case err != nil:
		return nil, fmt.Errorf("renewlock: acquire %q: %w", key, err)
	case l == nil:
		return nil, fmt.Errorf("%w: key %q, lease ends within %v", ErrNotAcquired, key, wait)
	}
	return l, nil
}

// Acquire takes key, waiting as long as ctx allows while another holder has
// it. It wakes as soon as the holder releases (a pub/sub notification), or
// when the holder's lease expires if it crashed. Redis errors while waiting
// are retried with backoff. When ctx ends first, the error wraps ctx.Err()
// and nothing is left behind in Redis.
func (c *Client) Acquire(ctx context.Context, key string, opts ...Option) (*Lock, error) {
	cfg, err := c.prepare(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	ch := cfg.prefix + key
	wait := cfg.ttl
	if !c.hub.waiting(ch) { // else queue behind this client's waiters
		var l *Lock
		l, wait, err = c.try(ctx, key, cfg, "")
		if l != nil {
			return l, nil
		}
		if isRejected(err) { // retrying cannot fix it
			return nil, fmt.Errorf("renewlock: acquire %q: %w", key, err)
		}
	}
	return c.wait(ctx, key, cfg, wait, err)
}

// wait is the slow path of Acquire: queue as a waiter and try again on each
// release notification, or at the fallback time; or take the lock straight
// from a releasing goroutine of this Client (handOff).
func (c *Client) wait(ctx context.Context, key string, cfg *config, wait time.Duration, lastErr error) (*Lock, error) {
	ch := cfg.prefix + key
	w, err := c.hub.join(ch, cfg)
	if err != nil {
		return nil, err
	}
	acquired := false
	defer func() { c.hub.leave(w, acquired) }()

	ready := w.ready
	if !w.head {
		ready = nil // the head covers notifications; we wait our turn
	}
	adopt := ""              // owner id to retry with after a hand-off of unknown outcome
	redisErr := lastErr      // the last Redis error, kept for the final error
	failed := func() error { // the error when ctx ends
		if redisErr != nil {
			return fmt.Errorf("renewlock: acquire %q: %w (last Redis error: %v)", key, ctx.Err(), redisErr)
		}
		return fmt.Errorf("renewlock: acquire %q: %w", key, ctx.Err())
	}
	backoff := 10 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		fallback := wait
		if lastErr != nil {
			fallback, backoff = backoff, min(2*backoff, time.Second)
		} else {
			backoff = 10 * time.Millisecond
		}
		timer.Reset(fallback)
		select {
		case <-ready:
			ready = nil
		case <-w.wake:
			if d := c.hub.yieldLeft(ch); d > 0 {
				// Another client was told of the release: let it go first.
				wait, lastErr = d, nil
				continue
			}
		case <-timer.C:
		case ho := <-w.handed:
			if ho.lock != nil {
				acquired = true
				return ho.lock, nil
			}
			if adopt = ho.adopt; adopt == "" {
				// Not handed over (released for other clients, or another
				// owner has it): try again, after the yield if there is one.
				// The wake for this release may already be used up, so
				// sleeping on the old fallback could sleep a whole TTL.
				if d := c.hub.yieldLeft(ch); d > 0 {
					wait, lastErr = d, nil
					continue
				}
			}
		case <-ctx.Done():
			return nil, c.giveUp(w, failed())
		case <-c.ctx.Done():
			return nil, c.giveUp(w, ErrClientClosed)
		}
		timer.Stop()
		var l *Lock
		l, wait, lastErr = c.try(ctx, key, cfg, adopt)
		adopt = ""
		if l != nil {
			acquired = true
			l.cohort = c.hub.queued(ch) - 1 // the waiters behind this one
			return l, nil
		}
		if lastErr != nil {
			if isRejected(lastErr) { // retrying cannot fix it
				return nil, c.giveUp(w, fmt.Errorf("renewlock: acquire %q: %w", key, lastErr))
			}
			if ctx.Err() != nil {
				return nil, c.giveUp(w, failed())
			}
			redisErr = lastErr
		}
	}
}

// giveUp ends a wait that failed with err. If a release was just handing
// the lock to w, it takes the outcome and releases what it got, so that a
// waiter that gives up leaves nothing held.
func (c *Client) giveUp(w *waiter, err error) error {
	if !c.hub.withdraw(w) {
		return err
	}
	ho := <-w.handed
	switch {
	case ho.lock != nil:
		ctx, cancel := context.WithTimeout(context.Background(), min(ho.lock.cfg.ttl, closeTimeout))
		defer cancel()
		_ = ho.lock.Release(ctx)
	case ho.adopt != "":
		c.cleanup(w.ch, ho.adopt, w.cfg)
	}
	return err
}

// try runs the acquire script once, with a new owner id, or with owner if
// not empty. It returns the lock, or the holder's remaining TTL, or an error.
func (c *Client) try(ctx context.Context, key string, cfg *config, owner string) (*Lock, time.Duration, error) {
	if owner == "" {
		owner = newOwnerID()
	}
	rkey := cfg.prefix + key
	sent := time.Now()
	// If the caller gives up after the call was sent, release what it took.
	abandoned := func(cmd *redis.Cmd) {
		if res, err := cmd.Int64Slice(); err != nil || (len(res) == 2 && res[0] == 1) {
			c.cleanup(rkey, owner, cfg)
		}
	}
	res, err := c.co.run(ctx, acquireScript, []string{rkey},
		[]any{owner, cfg.ttl.Milliseconds(), cfg.holder}, abandoned).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("renewlock: acquire script returned %d values", len(res))
	}
	if err != nil {
		if !isReplyError(err) {
			// The script may have run: remove what it may have taken.
			c.cleanup(rkey, owner, cfg)
		}
		return nil, 0, classify(err, rkey)
	}
	if res[0] == 0 {
		// PTTL is truncated to ms (0: expires within the millisecond); -1, a
		// key without expiry, is not ours to fix: look again in one TTL.
		wait := time.Duration(res[1]+1) * time.Millisecond
		if res[1] < 0 {
			wait = cfg.ttl
		}
		return nil, wait, nil
	}
	l := &Lock{
		c: c, key: key, rkey: rkey, owner: owner, token: uint64(res[1]), cfg: cfg,
		done: make(chan struct{}),
	}
	if !c.renew.add(l, sent) {
		c.cleanup(rkey, owner, cfg)
		return nil, 0, ErrClientClosed
	}
	return l, 0, nil
}

// cleanup releases (owner-checked) a lease an interrupted acquire may have
// taken, in the background, bounded by one TTL.
// After Close it runs in the caller, since Close no longer waits for it.
func (c *Client) cleanup(rkey, owner string, cfg *config) {
	run := func() {
		ctx, cancel := context.WithTimeout(context.Background(), min(cfg.ttl, closeTimeout))
		defer cancel()
		_ = releaseScript.Run(ctx, c.rdb, []string{rkey}, owner, cfg.ttl.Milliseconds(), rkey).Err()
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

// release runs the release script for l: true if it was ours and is now
// released, false if it was not ours (nothing touched). If other clients
// wait for the key, this client's waiters let them go first.
func (c *Client) release(ctx context.Context, l *Lock) (bool, error) {
	own := c.hub.ownSubscriptions(l.rkey)
	if own > 0 {
		c.hub.expectOwnRelease(l.rkey)
	}
	res, err := c.co.run(ctx, releaseScript, []string{l.rkey},
		[]any{l.owner, l.cfg.ttl.Milliseconds(), l.rkey}, nil).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("renewlock: release script returned %d values", len(res))
	}
	if own > 0 && (err != nil || res[0] != 1 || res[1] <= int64(own)) {
		c.hub.cancelOwnRelease(l.rkey) // nobody else was told
	}
	if err != nil {
		return false, classify(err, l.rkey)
	}
	return res[0] == 1, nil
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
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.ttl)
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
		held, releasing := c.renew.drain()
		for _, l := range held {
			l.finish(ErrClientClosed, true)
		}
		for _, l := range releasing {
			// Their Release calls are under way and report the outcome;
			// the renewal loop that watched their deadline stops now.
			l.finish(ErrClientClosed, false)
		}
		c.hub.close()
		// Release first, then wait for what is still in flight: a renewal
		// that lands after the release finds the key not ours.
		var err error
		relErr := make(chan error, 1)
		if waitUntil(deadline, func() { relErr <- c.releaseAll(held, deadline) }) {
			err = <-relErr
		} else {
			err = fmt.Errorf("renewlock: close: releasing %d locks: Redis did not answer within %v; they expire after their TTL",
				len(held), closeTimeout)
		}
		var stuck []string
		if !waitUntil(deadline, c.renew.close) {
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

// releaseAll releases locks in one pipelined round trip, for Close.
func (c *Client) releaseAll(locks []*Lock, deadline time.Time) error {
	if len(locks) == 0 {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmds := evalPipelined(ctx, c.rdb, len(locks), func(i int) (*redis.Script, []string, []any) {
		l := locks[i]
		return releaseScript, []string{l.rkey}, []any{l.owner, l.cfg.ttl.Milliseconds(), l.rkey}
	})
	var err error
	for i, cmd := range cmds {
		if e := cmd.Err(); e != nil && err == nil {
			err = classify(e, locks[i].rkey)
		}
	}
	if err != nil {
		return fmt.Errorf("renewlock: close: releasing %d locks: %w", len(locks), err)
	}
	for _, l := range locks {
		l.mu.Lock()
		l.released, l.releaseErr = true, ErrClientClosed
		l.mu.Unlock()
	}
	return nil
}

// newOwnerID returns 128 random bits from crypto/rand, hex-encoded.
func newOwnerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}
