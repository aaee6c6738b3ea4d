package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// s6Res is the outcome of S6 (renewal at scale; renewlock only: no peer
// renews by itself).
type s6Res struct {
	Locks            int     `json:"locks"`
	TTLSeconds       float64 `json:"ttl_s"`
	AcquireSeconds   float64 `json:"acquire_all_s"`
	HeapBytesPerLock float64 `json:"heap_bytes_per_lock"`
	GoroutinesPerLck float64 `json:"goroutines_per_lock"`
	// Whole hold: renewal pipelines (the only pipelines the client sends).
	HoldSeconds         float64 `json:"hold_s"`
	RenewRoundTrips     int64   `json:"renew_round_trips"`
	RenewPerInterval    float64 `json:"renew_round_trips_per_renew_interval"`
	LocksPerRenewRT     float64 `json:"locks_per_renew_round_trip"`
	RenewRoundTripsPerS float64 `json:"renew_round_trips_per_s"`
	// Quiet phase: only renewals run.
	QuietSeconds      float64 `json:"quiet_s"`
	RoundTripsPerSec  float64 `json:"round_trips_per_s"`
	CommandsPerSec    float64 `json:"script_calls_per_s"`
	LargestPipeline   int64   `json:"largest_pipeline_cmds"`
	RenewedPerSec     float64 `json:"locks_renewed_per_s"`
	RedisCPUPercent   float64 `json:"redis_cpu_percent"`
	RedisUsecPerRenew float64 `json:"redis_usec_per_lock_renewed"`
	ClientCPUPercent  float64 `json:"client_cpu_percent"`
	// Duration of each renew script call in Redis (SLOWLOG, quiet phase).
	RenewScript   dist `json:"renew_script_duration"`
	RenewNoscript int  `json:"renew_script_noscript_replies"`
	// Commands over 1 ms in the busy phase (renew scripts, others).
	BusyRenewOver1ms int `json:"busy_renew_scripts_over_1ms"`
	BusyOtherOver1ms int `json:"busy_other_commands_over_1ms"`
	// S1 on the same Client, alone (before and after) and while renewing.
	S1Alone      dist    `json:"s1_alone"`
	S1During     dist    `json:"s1_during"`
	LostLocks    int     `json:"lost_locks"`
	CloseSeconds float64 `json:"close_release_all_s"`
}

func (b *bench) renewalAtScale(n int, d, ttl time.Duration) (*s6Res, error) {
	ctx := context.Background()
	if err := b.admin.FlushAll(ctx).Err(); err != nil {
		return nil, err
	}
	ctr := &counters{}
	rdb := goRedisClient(b.addr, ctr)
	defer rdb.Close()
	c, err := renewlock.New(rdb, renewlock.WithTTL(ttl), renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			_ = c.Close()
		}
	}()
	r := &s6Res{Locks: n, TTLSeconds: ttl.Seconds()}

	serial := func(tag string, d time.Duration) []time.Duration {
		var lat []time.Duration
		stop := time.Now().Add(d)
		for i := 0; time.Now().Before(stop); i++ {
			octx, cancel := context.WithTimeout(ctx, opTimeout)
			t0 := time.Now()
			l, err := c.Acquire(octx, fmt.Sprintf("s6:%s:%d", tag, i))
			if err == nil {
				err = l.Release(octx)
			}
			el := time.Since(t0)
			cancel()
			if err == nil {
				lat = append(lat, el)
			}
		}
		return lat
	}
	alone := serial("alone1", d/4)

	// Grow the connection pool to its size under load first, so that its
	// buffers are not counted as memory per lock.
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				if l, err := c.Acquire(octx, fmt.Sprintf("s6:warm:%d:%d", w, i)); err == nil {
					_ = l.Release(octx)
				}
				cancel()
			}
		}()
	}
	wg.Wait()

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	locks := make([]*renewlock.Lock, n)
	start := time.Now()
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 64 {
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				l, err := c.Acquire(octx, "s6:held:"+strconv.Itoa(i))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("S6 acquire %d: %w", i, err)
					return
				}
				locks[i] = l
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	r.AcquireSeconds = time.Since(start).Seconds()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	g1 := runtime.NumGoroutine()
	r.HeapBytesPerLock = (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / float64(n)
	r.GoroutinesPerLck = float64(g1-g0) / float64(n)

	// In the quiet phase every command is logged with its duration, so the
	// renew scripts' Redis time is seen one by one.
	if err := setSlowlog(ctx, b.admin, 0); err != nil {
		return nil, err
	}
	// Quiet phase: only the renewals talk to Redis.
	holdStart := time.Now()
	p0, k0 := ctr.pipelines.Load(), ctr.pipeKeys.Load()
	s0, _ := snapshot(ctx, b.admin)
	c0 := ctr.snap()
	cpu0 := cpuTime()
	ctr.pipeMax.Store(0)
	t0 := time.Now()
	time.Sleep(d / 2)
	q := time.Since(t0).Seconds()
	cpu1 := cpuTime()
	c1 := ctr.snap().sub(c0)
	s1, _ := snapshot(ctx, b.admin)
	r.QuietSeconds = q
	r.RoundTripsPerSec = float64(c1.roundTrips) / q
	r.CommandsPerSec = float64(c1.commands) / q
	r.LargestPipeline = ctr.pipeMax.Load()
	renewed := s1.cmds["pexpire"] - s0.cmds["pexpire"]
	r.RenewedPerSec = float64(renewed) / q
	r.RedisCPUPercent = 100 * (s1.cpu - s0.cpu) / q
	r.ClientCPUPercent = 100 * (cpu1 - cpu0).Seconds() / q
	if renewed > 0 {
		usec := (s1.usec["evalsha"] - s0.usec["evalsha"]) + (s1.usec["eval"] - s0.usec["eval"])
		r.RedisUsecPerRenew = float64(usec) / float64(renewed)
	}

	scripts, _ := readSlowlog(ctx, b.admin)
	r.RenewScript = summarizeUsec(scripts.renew)
	r.RenewNoscript = scripts.noscript
	if err := setSlowlog(ctx, b.admin, 1000); err != nil {
		return nil, err
	}

	// Busy phase: S1 on the same Client while the renewals go on.
	r.S1During = summarize(serial("during", d/2))
	r.HoldSeconds = time.Since(holdStart).Seconds()
	r.RenewRoundTrips = ctr.pipelines.Load() - p0
	r.RenewRoundTripsPerS = float64(r.RenewRoundTrips) / r.HoldSeconds
	r.RenewPerInterval = float64(r.RenewRoundTrips) / (r.HoldSeconds / (ttl / 3).Seconds())
	if r.RenewRoundTrips > 0 {
		r.LocksPerRenewRT = float64(ctr.pipeKeys.Load()-k0) / float64(r.RenewRoundTrips)
	}

	for _, l := range locks {
		if l.Err() != nil {
			r.LostLocks++
		}
	}
	busy, _ := readSlowlog(ctx, b.admin)
	r.BusyRenewOver1ms, r.BusyOtherOver1ms = len(busy.renew), len(busy.other)
	_ = setSlowlog(ctx, b.admin, 10000)

	t0 = time.Now()
	_ = c.Close() // releases every held lock in one pipelined round trip
	closed = true
	r.CloseSeconds = time.Since(t0).Seconds()

	c2, err := renewlock.New(rdb, renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return nil, err
	}
	c = c2
	closed = false
	alone = append(alone, serial("alone2", d/4)...)
	r.S1Alone = summarize(alone)
	return r, nil
}

// redisVersion returns the server's version string.
func redisVersion(ctx context.Context, rdb *redis.Client) string {
	m, err := info(ctx, rdb, "server")
	if err != nil {
		return "?"
	}
	return m["redis_version"]
}

func setSlowlog(ctx context.Context, rdb *redis.Client, usec int) error {
	if err := rdb.ConfigSet(ctx, "slowlog-max-len", "100000").Err(); err != nil {
		return err
	}
	if err := rdb.ConfigSet(ctx, "slowlog-log-slower-than", strconv.Itoa(usec)).Err(); err != nil {
		return err
	}
	return rdb.Do(ctx, "SLOWLOG", "RESET").Err()
}

type slowEntries struct {
	renew, other []time.Duration
	noscript     int
}

// readSlowlog returns the logged durations of renew scripts (EVALSHA/EVAL
// with more than one key) and of other commands (except the bench's own).
func readSlowlog(ctx context.Context, rdb *redis.Client) (slowEntries, error) {
	var out slowEntries
	slow, err := rdb.Do(ctx, "SLOWLOG", "GET", "100000").Slice()
	if err != nil {
		return out, err
	}
	for _, e := range slow {
		f, ok := e.([]any)
		if !ok || len(f) < 4 {
			continue
		}
		us, _ := f[2].(int64)
		args, _ := f[3].([]any)
		d := time.Duration(us) * time.Microsecond
		if len(args) == 0 {
			continue
		}
		switch strings.ToLower(fmt.Sprint(args[0])) {
		case "info", "config", "slowlog":
			continue
		case "evalsha", "eval":
			if len(args) >= 3 {
				if nk, _ := strconv.Atoi(fmt.Sprint(args[2])); nk > 1 {
					// A call that took no time at all was answered
					// NOSCRIPT (the renew script is not loaded yet).
					if d < 5*time.Microsecond {
						out.noscript++
					} else {
						out.renew = append(out.renew, d)
					}
					continue
				}
			}
		}
		out.other = append(out.other, d)
	}
	return out, nil
}

// summarizeUsec is summarize with the results in µs instead of ms.
func summarizeUsec(d []time.Duration) dist {
	s := summarize(d)
	for _, f := range []*float64{&s.P50, &s.P99, &s.P999, &s.Max, &s.Mean} {
		*f *= 1000
	}
	for i := range s.Q {
		s.Q[i] *= 1000
	}
	return s
}
