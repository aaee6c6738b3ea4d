package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// opTimeout bounds one acquire or release outside the contention scenarios,
// so that a stuck library shows up as errors instead of hanging the run.
const opTimeout = 10 * time.Second

// libState is one library during a run: two instances (two clients with
// their own connections) and the counters of both.
type libState struct {
	library
	ctr  *counters
	inst [2]instance
}

// pairRes is the outcome of S1 or S2 for one library, summed over rounds.
type pairRes struct {
	Pairs       int     `json:"pairs"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PairsPerSec float64 `json:"pairs_per_sec"`
	Latency     dist    `json:"latency"`
	ClientCPUus float64 `json:"client_cpu_us_per_pair"`
	RedisCPUus  float64 `json:"redis_cpu_us_per_pair"`
	latencies   []time.Duration
	clientCPU   time.Duration
	redisCPU    float64
}

func (p *pairRes) finish() {
	p.Latency = summarize(p.latencies)
	if p.Seconds > 0 {
		p.PairsPerSec = float64(p.Pairs) / p.Seconds
	}
	if p.Pairs > 0 {
		p.ClientCPUus = float64(p.clientCPU.Microseconds()) / float64(p.Pairs)
		p.RedisCPUus = p.redisCPU * 1e6 / float64(p.Pairs)
	}
}

// pairs runs acquire+release on new keys from `workers` goroutines for d and
// adds the outcome to res.
func (b *bench) pairs(ls *libState, keyBase string, workers int, d time.Duration, res *pairRes) {
	ctx := context.Background()
	s0, _ := snapshot(ctx, b.admin)
	cpu0 := cpuTime()
	start := time.Now()
	stop := start.Add(d)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			errs := 0
			for i := 0; time.Now().Before(stop); i++ {
				key := fmt.Sprintf("%s:%d:%d", keyBase, w, i)
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				t0 := time.Now()
				h, err := ls.inst[0].acquire(octx, key)
				if err == nil {
					err = h.release(octx)
				}
				el := time.Since(t0)
				cancel()
				if err != nil {
					errs++
					continue
				}
				lat = append(lat, el)
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.Pairs += len(lat)
			res.Errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	res.clientCPU += cpuTime() - cpu0
	s1, _ := snapshot(ctx, b.admin)
	res.redisCPU += s1.cpu - s0.cpu
	res.Seconds += el.Seconds()
}

// contRes is the outcome of S3 for one library and hold time.
type contRes struct {
	Acquisitions int     `json:"acquisitions"`
	Seconds      float64 `json:"seconds"`
	AcqPerSec    float64 `json:"acq_per_sec"`
	Wait         dist    `json:"wait"`
	// MaxWait includes waits still running when a round ended (a lower
	// bound for those), so a starved goroutine shows.
	MaxWaitMs    float64 `json:"max_wait_ms"`
	PerGoroutine []int   `json:"per_goroutine"`
	Fairness     ratio   `json:"fairness_max_over_min"` // "inf" if some goroutine never won
	Violations   int64   `json:"exclusion_violations"`
	Errors       int     `json:"errors"`
	MeanHoldMs   float64 `json:"mean_hold_ms"`
	waits        []time.Duration
	holdSum      time.Duration
}

func (c *contRes) finish() {
	c.Wait = summarize(c.waits)
	c.MaxWaitMs = max(c.MaxWaitMs, c.Wait.Max)
	if c.Seconds > 0 {
		c.AcqPerSec = float64(c.Acquisitions) / c.Seconds
	}
	if c.Acquisitions > 0 {
		c.MeanHoldMs = ms(c.holdSum / time.Duration(c.Acquisitions))
	}
	lo, hi := -1, 0
	for _, n := range c.PerGoroutine {
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	switch {
	case lo > 0:
		c.Fairness = ratio(float64(hi) / float64(lo))
	case hi > 0:
		c.Fairness = ratio(inf)
	}
}

// contention runs S3: goroutines (half on each instance) take one key in
// turn for d, holding it for hold, and checks exclusion with a counter in
// the critical section.
func (b *bench) contention(ls *libState, key string, goroutines int, hold, d time.Duration, res *contRes) {
	if res.PerGoroutine == nil {
		res.PerGoroutine = make([]int, goroutines)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var inside atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst := ls.inst[g%2]
			var waits []time.Duration
			var holdSum time.Duration
			n, errs := 0, 0
			var viol int64
			censored := time.Duration(0)
			for ctx.Err() == nil {
				t0 := time.Now()
				h, err := inst.acquire(ctx, key)
				if err != nil {
					if ctx.Err() != nil {
						censored = time.Since(t0)
						break
					}
					errs++
					continue
				}
				waits = append(waits, time.Since(t0))
				n++
				h0 := time.Now()
				if inside.Add(1) != 1 {
					viol++
				}
				if hold > 0 {
					time.Sleep(hold) // the work done under the lock
				}
				inside.Add(-1)
				holdSum += time.Since(h0)
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				if err := h.release(rctx); err != nil {
					errs++
				}
				rcancel()
			}
			mu.Lock()
			res.waits = append(res.waits, waits...)
			res.Acquisitions += n
			res.PerGoroutine[g] += n
			res.Errors += errs
			res.Violations += viol
			res.holdSum += holdSum
			res.MaxWaitMs = max(res.MaxWaitMs, ms(censored))
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Count time up to the end of the window only: goroutines stop on ctx.
	res.Seconds += min(time.Since(start), d).Seconds()
}

// handoffRes is the outcome of S4 for one library.
type handoffRes struct {
	Handoff dist `json:"handoff"`
	Errors  int  `json:"errors"`
	samples []time.Duration
}

// handoff runs S4: instance 0 holds key, a waiter blocks on it, and after
// a random 10–30 ms (so every poller is caught at a random phase of its
// sleep) the holder releases; the time from the start of Release to the
// waiter holding the lock is one sample. The waiter uses instance 1 (another
// client: the release must go through Redis to reach it) or, with local,
// instance 0 itself (a library may pass the lock on inside the client).
func (b *bench) handoff(ls *libState, key string, n int, local bool, res *handoffRes) {
	winst := ls.inst[1]
	if local {
		winst = ls.inst[0]
	}
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		h, err := ls.inst[0].acquire(ctx, key)
		if err != nil {
			res.Errors++
			cancel()
			continue
		}
		got := make(chan time.Time, 1)
		var wh held
		var werr error
		go func() {
			wh, werr = winst.acquire(ctx, key)
			got <- time.Now()
		}()
		// Let the waiter block: this is the scenario, not synchronisation.
		time.Sleep(10*time.Millisecond + mrand.N(20*time.Millisecond))
		t0 := time.Now()
		rerr := h.release(ctx)
		t1 := <-got
		if werr != nil || rerr != nil {
			res.Errors++
		} else {
			res.samples = append(res.samples, t1.Sub(t0))
			if err := wh.release(ctx); err != nil {
				res.Errors++
			}
		}
		cancel()
	}
}

// costRes is the outcome of S5 for one library.
type costRes struct {
	Pairs int `json:"pairs"`
	// RoundTrips counts go-redis commands and pipelines (hook); for rueidis,
	// which has no such hook, it is the socket writes.
	RoundTrips   float64            `json:"round_trips_per_pair"`
	SocketWrites float64            `json:"socket_writes_per_pair"`
	Sent         float64            `json:"commands_sent_per_pair"`
	AllCommands  float64            `json:"redis_commands_incl_in_script_per_pair"`
	Commands     map[string]float64 `json:"commands_per_pair"`
	ScriptUsec   float64            `json:"redis_script_usec_per_pair"`
	RedisCPUus   float64            `json:"redis_cpu_us_per_pair"`
}

// cost runs S5: n serial uncontended pairs, counting what reaches Redis.
func (b *bench) cost(ls *libState, keyBase string, n int) (costRes, error) {
	ctx := context.Background()
	time.Sleep(50 * time.Millisecond) // let background traffic of earlier scenarios drain
	s0, err := snapshot(ctx, b.admin)
	if err != nil {
		return costRes{}, err
	}
	c0 := ls.ctr.snap()
	for i := 0; i < n; i++ {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		h, err := ls.inst[0].acquire(octx, fmt.Sprintf("%s:%d", keyBase, i))
		if err == nil {
			err = h.release(octx)
		}
		cancel()
		if err != nil {
			return costRes{}, fmt.Errorf("%s: S5 pair %d: %w", ls.name, i, err)
		}
	}
	if _, ok := ls.inst[0].(*rueidislockInst); ok {
		// rueidislock releases its surplus keys from goroutines after
		// cancel returns: wait for them to land before counting.
		time.Sleep(100 * time.Millisecond)
	}
	c1 := ls.ctr.snap().sub(c0)
	s1, err := snapshot(ctx, b.admin)
	if err != nil {
		return costRes{}, err
	}
	f := float64(n)
	r := costRes{Pairs: n, Commands: make(map[string]float64)}
	r.SocketWrites = float64(c1.writes) / f
	r.RoundTrips = float64(c1.roundTrips) / f
	if c1.roundTrips == 0 {
		r.RoundTrips = r.SocketWrites
	}
	r.Sent = float64(c1.commands) / f
	if c1.commands == 0 {
		// rueidislock sends nothing but scripts.
		d := cmdDelta(s0, s1)
		r.Sent = float64(d["evalsha"]+d["eval"]) / f
	}
	var all int64
	for k, v := range cmdDelta(s0, s1) {
		r.Commands[k] = float64(v) / f
		all += v
	}
	r.AllCommands = float64(all) / f
	// A script's time includes the commands it runs, which commandstats
	// also lists on their own: count only the scripts' time.
	r.ScriptUsec = float64(s1.usec["evalsha"]-s0.usec["evalsha"]+s1.usec["eval"]-s0.usec["eval"]) / f
	r.RedisCPUus = (s1.cpu - s0.cpu) * 1e6 / f
	return r, nil
}

// idlePing measures PING round trips that start, like an S4 release, after
// the client and the server have been idle for a random 10–30 ms: on an
// idle machine that is slower than back-to-back PINGs (threads and CPUs
// must wake up), and it is the fair yardstick for a hand-off.
func (b *bench) idlePing(n int) []time.Duration {
	ctx := context.Background()
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		time.Sleep(10*time.Millisecond + mrand.N(20*time.Millisecond))
		t0 := time.Now()
		if err := b.admin.Ping(ctx).Err(); err == nil {
			out = append(out, time.Since(t0))
		}
	}
	return out
}

// ping measures bare PING round trips on the admin connection.
func (b *bench) ping(n int) []time.Duration {
	ctx := context.Background()
	out := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := b.admin.Ping(ctx).Err(); err == nil {
			out = append(out, time.Since(t0))
		}
	}
	return out
}

// warmUp runs 50 uncontended acquire+release pairs on ls, on both
// instances in turn (connections, scripts), on keys prefix:N.
func warmUp(ctx context.Context, ls *libState, prefix string) error {
	for i := 0; i < 50; i++ {
		h, err := ls.inst[i%2].acquire(ctx, fmt.Sprintf("%s:%d", prefix, i))
		if err != nil {
			return fmt.Errorf("%s: warm-up: %w", ls.name, err)
		}
		if err := h.release(ctx); err != nil {
			return fmt.Errorf("%s: warm-up release: %w", ls.name, err)
		}
	}
	return nil
}

// roundTripsPerPair runs 500 uncontended acquire+release pairs on ls's
// first instance, on keys prefix:N, and returns the go-redis round trips
// per pair (all servers together).
func roundTripsPerPair(ctx context.Context, ls *libState, prefix string) (float64, error) {
	const n = 500
	time.Sleep(50 * time.Millisecond) // background traffic drains
	c0 := ls.ctr.snap()
	for i := 0; i < n; i++ {
		h, err := ls.inst[0].acquire(ctx, fmt.Sprintf("%s:%d", prefix, i))
		if err != nil {
			return 0, fmt.Errorf("%s: %w", ls.name, err)
		}
		if err := h.release(ctx); err != nil {
			return 0, fmt.Errorf("%s: %w", ls.name, err)
		}
	}
	time.Sleep(20 * time.Millisecond) // redlock's last release lands after Release returns
	return float64(ls.ctr.snap().sub(c0).roundTrips) / n, nil
}
