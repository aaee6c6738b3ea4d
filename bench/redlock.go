package main

// Scenario RL: Redlock on 3 independent masters — renewlock/redlock
// against redsync, the Redlock people use, on the same three redis-servers
// (started here, loopback, no persistence). The libraries take turns in
// every round, in a rotating order.
//
//	cd bench && go run . -scenarios rl
//
// Measured: serial acquire+release pairs/s (1 goroutine, new key each time)
// with latency and round trips per pair; contention (16 goroutines in 2
// clients, one key, hold 0 and 1 ms): acq/s, waits, fairness, exclusion
// violations; hand-off (release → a waiter in another client holds).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/go-redsync/redsync/v4"
	rsredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redisserver"
	"github.com/renewlock/renewlock/redlock"
)

// rlMasters is the number of masters of scenario RL.
const rlMasters = 3

// rlRes is the outcome of scenario RL.
type rlRes struct {
	Masters    []string               `json:"masters"`
	Libraries  map[string]string      `json:"libraries"`
	Serial     map[string]*pairRes    `json:"serial"`
	RoundTrips map[string]float64     `json:"round_trips_per_pair"` // go-redis round trips, all masters together
	Hold0      map[string]*contRes    `json:"contention_hold0"`
	Hold1      map[string]*contRes    `json:"contention_hold1ms"`
	Handoff    map[string]*handoffRes `json:"handoff"`
	order      []string
}

// rlLibrary is one Redlock implementation; open connects an instance to
// every master.
type rlLibrary struct {
	name, note string
	open       func(addrs []string, c *counters) (instance, error)
}

var rlLibraries = []rlLibrary{
	{name: "redlock", note: "renewlock/redlock: self-renewing, gate-queue wake-up, monotonic fencing token (3 round trips per pair)", open: openRedlock},
	{name: "redsync", note: "redsync v4 on 3 pools, defaults: 32 tries, 50–250 ms random retry delay (retried until ctx ends)", open: openRedsync3(false)},
	{name: "redsync-1-5ms", note: "redsync v4 on 3 pools, retry delay 1–5 ms random, unlimited tries", open: openRedsync3(true)},
}

// --- renewlock/redlock

type redlockInst struct {
	rdbs []*redis.Client
	c    *redlock.Client
}

type redlockHeld struct{ l *redlock.Lock }

func openRedlock(addrs []string, c *counters) (instance, error) {
	var rdbs []*redis.Client
	var masters []redis.UniversalClient
	for _, a := range addrs {
		rdb := goRedisClient(a, c)
		rdbs = append(rdbs, rdb)
		masters = append(masters, rdb)
	}
	rl, err := redlock.New(masters, renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		for _, r := range rdbs {
			_ = r.Close()
		}
		return nil, err
	}
	return &redlockInst{rdbs, rl}, nil
}

func (r *redlockInst) acquire(ctx context.Context, key string) (held, error) {
	l, err := r.c.Acquire(ctx, "rl:"+key)
	if err != nil {
		return nil, err
	}
	return redlockHeld{l}, nil
}

func (h redlockHeld) release(ctx context.Context) error { return h.l.Release(ctx) }

func (r *redlockInst) close() {
	_ = r.c.Close()
	for _, rdb := range r.rdbs {
		_ = rdb.Close()
	}
}

// --- redsync on 3 pools

type redsync3Inst struct {
	rdbs  []*redis.Client
	rs    *redsync.Redsync
	tuned bool
}

func openRedsync3(tuned bool) func([]string, *counters) (instance, error) {
	return func(addrs []string, c *counters) (instance, error) {
		inst := &redsync3Inst{tuned: tuned}
		var pools []rsredis.Pool
		for _, a := range addrs {
			rdb := goRedisClient(a, c)
			inst.rdbs = append(inst.rdbs, rdb)
			pools = append(pools, goredis.NewPool(rdb))
		}
		inst.rs = redsync.New(pools...)
		return inst, nil
	}
}

func (r *redsync3Inst) acquire(ctx context.Context, key string) (held, error) {
	var opts []redsync.Option
	if r.tuned {
		opts = append(opts,
			redsync.WithTries(1<<30),
			redsync.WithRetryDelayFunc(func(int) time.Duration {
				return time.Millisecond + mrand.N(4*time.Millisecond)
			}))
	}
	m := r.rs.NewMutex("rs:"+key, opts...)
	return retryUntil(ctx, func() (held, error) {
		if err := m.LockContext(ctx); err != nil {
			return nil, err
		}
		return redsyncHeld{m}, nil
	})
}

func (r *redsync3Inst) close() {
	for _, rdb := range r.rdbs {
		_ = rdb.Close()
	}
}

// redlockScenario runs scenario RL.
func (b *bench) redlockScenario(bin string) (*rlRes, error) {
	var addrs []string
	for range rlMasters {
		srv, err := redisserver.Start(redisserver.Config{Binary: bin})
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		addrs = append(addrs, srv.Addr())
	}
	res := &rlRes{Masters: addrs, Libraries: map[string]string{}, Serial: map[string]*pairRes{}, RoundTrips: map[string]float64{},
		Hold0: map[string]*contRes{}, Hold1: map[string]*contRes{}, Handoff: map[string]*handoffRes{}}
	var libs []*libState
	for _, lib := range rlLibraries {
		if b.cfg.Libs != "" && !slices.Contains(strings.Split(b.cfg.Libs, ","), lib.name) {
			continue
		}
		ls := &libState{library: library{name: lib.name, peer: lib.name != "redlock", note: lib.note}, ctr: &counters{}}
		for i := range ls.inst {
			inst, err := lib.open(addrs, ls.ctr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", lib.name, err)
			}
			defer inst.close()
			ls.inst[i] = inst
		}
		libs = append(libs, ls)
		res.Libraries[lib.name] = lib.note
		res.order = append(res.order, lib.name)
		res.Serial[lib.name], res.Hold0[lib.name], res.Hold1[lib.name], res.Handoff[lib.name] = &pairRes{}, &contRes{}, &contRes{}, &handoffRes{}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("scenario rl: none of its libraries (%s) is in -libs", "redlock, redsync, redsync-1-5ms")
	}
	ctx := context.Background()
	for _, ls := range libs {
		if err := warmUp(ctx, ls, "warm"); err != nil {
			return nil, err
		}
	}
	for _, ls := range libs {
		var err error
		if res.RoundTrips[ls.name], err = roundTripsPerPair(ctx, ls, "rt"); err != nil {
			return nil, err
		}
	}
	for r := 0; r < b.cfg.Rounds; r++ {
		k := r % len(libs)
		for _, ls := range append(slices.Clone(libs[k:]), libs[:k]...) {
			logf("RL round %d %s serial", r+1, ls.name)
			b.pairs(ls, fmt.Sprintf("rl1:%d", r), 1, b.cfg.S1, res.Serial[ls.name])
			logf("RL round %d %s contention hold 0", r+1, ls.name)
			b.contention(ls, fmt.Sprintf("rl3:0:%d", r), b.cfg.S3Workers, 0, b.cfg.S3, res.Hold0[ls.name])
			logf("RL round %d %s contention hold 1ms", r+1, ls.name)
			b.contention(ls, fmt.Sprintf("rl3:1:%d", r), b.cfg.S3Workers, time.Millisecond, b.cfg.S3, res.Hold1[ls.name])
			logf("RL round %d %s hand-off", r+1, ls.name)
			b.handoff(ls, fmt.Sprintf("rl4:%d", r), b.cfg.S4, false, res.Handoff[ls.name])
		}
	}
	for _, name := range res.order {
		res.Serial[name].finish()
		res.Hold0[name].finish()
		res.Hold1[name].finish()
		res.Handoff[name].Handoff = summarize(res.Handoff[name].samples)
	}
	return res, nil
}

func writeRL(p func(string, ...any), r *rlRes, cfg config) {
	p("### RL Redlock on %d independent masters (%d rounds)\n\n", len(r.Masters), cfg.Rounds)
	for _, name := range r.order {
		p("- %s: %s\n", name, r.Libraries[name])
	}
	p("\nSerial: 1 goroutine, new key each time, acquire+release.\n\n")
	p("| library | pairs/s | p50 ms | p99 ms | round trips per pair (all masters) | errors |\n|---|---:|---:|---:|---:|---:|\n")
	for _, name := range r.order {
		s := r.Serial[name]
		p("| %s | %.0f | %.3f | %.3f | %.2f | %d |\n", name, s.PairsPerSec, s.Latency.P50, s.Latency.P99, r.RoundTrips[name], s.Errors)
	}
	for _, hc := range []struct {
		title string
		m     map[string]*contRes
	}{{"hold 0", r.Hold0}, {"hold 1 ms", r.Hold1}} {
		p("\nContention, %s: %d goroutines in 2 clients on one key.\n\n", hc.title, cfg.S3Workers)
		p("| library | acq/s | wait p50 ms | wait p99 ms | max wait ms | fairness max/min | violations | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, name := range r.order {
			c := hc.m[name]
			p("| %s | %.0f | %.2f | %.1f | %.1f | %s | %d | %d |\n", name, c.AcqPerSec, c.Wait.P50, c.Wait.P99, c.MaxWaitMs, c.Fairness, c.Violations, c.Errors)
		}
	}
	p("\nHand-off: release → a waiter in another client holds.\n\n")
	p("| library | p50 ms | p99 ms | max ms | samples | errors |\n|---|---:|---:|---:|---:|---:|\n")
	for _, name := range r.order {
		h := r.Handoff[name]
		p("| %s | %.3f | %.3f | %.3f | %d | %d |\n", name, h.Handoff.P50, h.Handoff.P99, h.Handoff.Max, h.Handoff.N, h.Errors)
	}
	p("\n")
}
