package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"

	"github.com/renewlock/renewlock"
)

// lockTTL is the lease used where a library needs one and has no default.
const lockTTL = 10 * time.Second

// A library is one lock implementation with one configuration.
type library struct {
	name string
	peer bool // a peer library (the minimal lock and renewlock are not)
	note string
	open func(addr string, c *counters) (instance, error)
}

// An instance is one client of a library: its own connections to Redis.
type instance interface {
	// acquire blocks until key is held or ctx ends (then it returns an error).
	acquire(ctx context.Context, key string) (held, error)
	close()
}

// held is one acquisition.
type held interface {
	release(ctx context.Context) error
}

var libraries = []library{
	{name: "renewlock", note: "event-driven waiting (pub/sub), watchdog renewal", open: openRenewlock},
	{name: "minimal", note: "SET NX PX + Lua compare-and-delete, 1 ms polling: the round-trip floor", open: openMinimal},
	{name: "redsync", peer: true, note: "defaults: 32 tries, 50–250 ms random retry delay", open: openRedsync(false)},
	{name: "redsync-1-5ms", peer: true, note: "retry delay 1–5 ms random, unlimited tries", open: openRedsync(true)},
	{name: "redislock-1ms", peer: true, note: "bsm/redislock, LinearBackoff(1 ms)", open: openRedislock(time.Millisecond)},
	{name: "redislock-10ms", peer: true, note: "bsm/redislock, LinearBackoff(10 ms)", open: openRedislock(10 * time.Millisecond)},
	{name: "rueidislock", peer: true, note: "defaults: 3 keys, majority 2, client-side-caching wake-up", open: openRueidislock(0)},
	{name: "rueidislock-1key", peer: true, note: "KeyMajority 1 (one key), otherwise defaults", open: openRueidislock(1)},
}

// retryUntil calls try until it succeeds or ctx ends; it is for the peers
// whose blocking call gives up after a while (redsync after 32 tries,
// redislock after one TTL), so that every library blocks until ctx ends.
func retryUntil(ctx context.Context, try func() (held, error)) (held, error) {
	for {
		h, err := try()
		if err == nil {
			return h, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// --- renewlock

type renewlockInst struct {
	rdb *redis.Client
	c   *renewlock.Client
}

type renewlockHeld struct{ l *renewlock.Lock }

func openRenewlock(addr string, c *counters) (instance, error) {
	rdb := goRedisClient(addr, c)
	rl, err := renewlock.New(rdb, renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &renewlockInst{rdb, rl}, nil
}

func (r *renewlockInst) acquire(ctx context.Context, key string) (held, error) {
	l, err := r.c.Acquire(ctx, key)
	if err != nil {
		return nil, err
	}
	return renewlockHeld{l}, nil
}

func (h renewlockHeld) release(ctx context.Context) error { return h.l.Release(ctx) }

func (r *renewlockInst) close() {
	_ = r.c.Close()
	_ = r.rdb.Close()
}

// --- the minimal lock

type minimalInst struct{ rdb *redis.Client }

type minimalHeld struct {
	rdb        *redis.Client
	key, value string
}

var minimalRelease = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

func openMinimal(addr string, c *counters) (instance, error) {
	return &minimalInst{goRedisClient(addr, c)}, nil
}

func (m *minimalInst) acquire(ctx context.Context, key string) (held, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	value := hex.EncodeToString(b[:])
	key = "minimal:" + key
	var timer *time.Timer
	for {
		ok, err := m.rdb.SetNX(ctx, key, value, lockTTL).Result()
		if err != nil {
			return nil, err
		}
		if ok {
			return minimalHeld{m.rdb, key, value}, nil
		}
		if timer == nil {
			timer = time.NewTimer(time.Millisecond)
			defer timer.Stop()
		} else {
			timer.Reset(time.Millisecond)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (h minimalHeld) release(ctx context.Context) error {
	n, err := minimalRelease.Run(ctx, h.rdb, []string{h.key}, h.value).Int64()
	if err == nil && n != 1 {
		err = fmt.Errorf("minimal: %q was not ours at release", h.key)
	}
	return err
}

func (m *minimalInst) close() { _ = m.rdb.Close() }

// --- redsync

type redsyncInst struct {
	rdb   *redis.Client
	rs    *redsync.Redsync
	tuned bool
}

type redsyncHeld struct{ m *redsync.Mutex }

func openRedsync(tuned bool) func(string, *counters) (instance, error) {
	return func(addr string, c *counters) (instance, error) {
		rdb := goRedisClient(addr, c)
		return &redsyncInst{rdb, redsync.New(goredis.NewPool(rdb)), tuned}, nil
	}
}

func (r *redsyncInst) acquire(ctx context.Context, key string) (held, error) {
	var opts []redsync.Option
	if r.tuned {
		opts = append(opts,
			redsync.WithTries(1<<30),
			redsync.WithRetryDelayFunc(func(int) time.Duration {
				return time.Millisecond + mrand.N(4*time.Millisecond)
			}))
	}
	m := r.rs.NewMutex("redsync:"+key, opts...)
	return retryUntil(ctx, func() (held, error) {
		if err := m.LockContext(ctx); err != nil {
			return nil, err
		}
		return redsyncHeld{m}, nil
	})
}

func (h redsyncHeld) release(ctx context.Context) error {
	ok, err := h.m.UnlockContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: unlock failed")
	}
	return err
}

func (r *redsyncInst) close() { _ = r.rdb.Close() }

// --- bsm/redislock

type redislockInst struct {
	rdb     *redis.Client
	c       *redislock.Client
	backoff time.Duration
}

type redislockHeld struct{ l *redislock.Lock }

func openRedislock(backoff time.Duration) func(string, *counters) (instance, error) {
	return func(addr string, c *counters) (instance, error) {
		rdb := goRedisClient(addr, c)
		return &redislockInst{rdb, redislock.New(rdb), backoff}, nil
	}
}

func (r *redislockInst) acquire(ctx context.Context, key string) (held, error) {
	opt := &redislock.Options{RetryStrategy: redislock.LinearBackoff(r.backoff)}
	return retryUntil(ctx, func() (held, error) {
		l, err := r.c.Obtain(ctx, "redislock:"+key, lockTTL, opt)
		if err != nil {
			return nil, err
		}
		return redislockHeld{l}, nil
	})
}

func (h redislockHeld) release(ctx context.Context) error { return h.l.Release(ctx) }

func (r *redislockInst) close() { _ = r.rdb.Close() }

// --- rueidislock

type rueidislockInst struct{ l rueidislock.Locker }

type rueidislockHeld struct{ cancel context.CancelFunc }

func openRueidislock(majority int32) func(string, *counters) (instance, error) {
	return func(addr string, c *counters) (instance, error) {
		l, err := rueidislock.NewLocker(rueidislock.LockerOption{
			KeyMajority: majority,
			ClientOption: rueidis.ClientOption{
				InitAddress: []string{addr},
				DialCtxFn:   rueidisDial(c),
			},
		})
		if err != nil {
			return nil, err
		}
		return &rueidislockInst{l}, nil
	}
}

func (r *rueidislockInst) acquire(ctx context.Context, key string) (held, error) {
	_, cancel, err := r.l.WithContext(ctx, key)
	if err != nil {
		return nil, err
	}
	return rueidislockHeld{cancel}, nil
}

// release cancels the lock's context; rueidislock's cancel waits until the
// keys are deleted.
func (h rueidislockHeld) release(context.Context) error {
	h.cancel()
	return nil
}

func (r *rueidislockInst) close() { r.l.Close() }
