package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// S1X, "S1 anatomy": where the time of a serial, uncontended acquire+release
// pair goes. It runs the S1 loop for renewlock and the minimal lock, and for
// raw go-redis calls that do what they send without any library code (the
// renewlock scripts as the library calls them, variants of those scripts,
// empty scripts, SET NX + DEL, two PINGs), interleaved in rounds. Per
// variant: wall time of the pair and of each of its two calls, this
// process's CPU, Redis CPU and Redis time per command (commandstats),
// allocations, goroutine schedulings and round trips. Under -cpuprofile
// each variant's samples carry the pprof label s1x=<variant>, e.g.
//
//	go tool pprof -tagfocus s1x=renewlock -top bench.prof

// anatomyVariant is one way of doing an acquire+release pair.
type anatomyVariant struct {
	name string
	note string
	ctr  *counters
	// pair does one pair on key; t1 is when the first call returned.
	pair func(ctx context.Context, key string) (t1 time.Time, err error)
}

// anatomyRes is the outcome of one variant, summed over rounds.
type anatomyRes struct {
	Note        string  `json:"note"`
	Pairs       int     `json:"pairs"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PairsPerSec float64 `json:"pairs_per_sec"`
	MeanPairUs  float64 `json:"mean_pair_us"`
	// RoundMeanUs is the mean pair time of each round; MedianRoundUs its
	// median, which a noisy round does not move.
	RoundMeanUs    []float64          `json:"round_mean_pair_us"`
	MedianRoundUs  float64            `json:"median_round_mean_pair_us"`
	Pair           dist               `json:"pair"`
	First          dist               `json:"first_call"`
	Second         dist               `json:"second_call"`
	ClientCPUus    float64            `json:"client_cpu_us_per_pair"`
	RedisCPUus     float64            `json:"redis_cpu_us_per_pair"`
	ScriptUs       float64            `json:"redis_evalsha_us_per_pair"`
	TopLevelUs     float64            `json:"redis_top_level_command_us_per_pair"`
	CallsPerPair   map[string]float64 `json:"redis_calls_per_pair"`
	UsecPerCall    map[string]float64 `json:"redis_usec_per_call"`
	AllocsPerPair  float64            `json:"allocs_per_pair"`
	BytesPerPair   float64            `json:"alloc_bytes_per_pair"`
	GoroutinesNew  float64            `json:"goroutines_created_per_pair"`
	GCPerKPairs    float64            `json:"gc_cycles_per_1000_pairs"`
	GCCPUus        float64            `json:"gc_cpu_us_per_pair"`
	VolCtxSw       float64            `json:"voluntary_context_switches_per_pair"`
	InvolCtxSw     float64            `json:"involuntary_context_switches_per_pair"`
	RoundTrips     float64            `json:"round_trips_per_pair"`
	SocketWrites   float64            `json:"socket_writes_per_pair"`
	pair, op1, op2 []time.Duration
	clientCPU      time.Duration
	redisCPU       float64
	calls, usec    map[string]int64
	allocs, bytes  uint64
	gor, gcs       uint64
	gcCPU          float64
	nvcsw, nivcsw  int64
	rt, writes     int64
}

// Variants of renewlock's scripts, to price their parts.
const (
	// acquire.lua's uncontended path without the holder description and
	// the acquisition time (fields h and a): o and t only.
	slimAcquireSrc = `local cur = redis.call('HMGET', KEYS[1], 'o', 't')
if cur[1] then
  if cur[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(cur[2])}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
local now = redis.call('TIME')
local token = tonumber(now[1]) * 1000000 + tonumber(now[2])
if cur[2] then
  local last = tonumber(cur[2])
  if last and last >= token then token = last + 1 end
end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 't', string.format('%.0f', token))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, token}`
	// release.lua's uncontended path: no queue, no grant, no PUBLISH.
	quietReleaseSrc = `local cur = redis.call('HMGET', KEYS[1], 'o', 't')
if cur[1] ~= ARGV[1] then
  return {0, 0}
end
local now = redis.call('TIME')
if tonumber(cur[2]) < tonumber(now[1]) * 1000000 + tonumber(now[2]) then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'o', 'h', 'a')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, 0}`
	emptyScriptSrc = `return {1, 1}`
)

func ownerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// anatomyVariants builds the variants; raw ones get a go-redis client of
// their own (closed by the returned func).
func (b *bench) anatomyVariants() ([]*anatomyVariant, func(), error) {
	var vs []*anatomyVariant
	for _, ls := range b.libs {
		if ls.name != "renewlock" && ls.name != "minimal" {
			continue
		}
		inst := ls.inst[0]
		vs = append(vs, &anatomyVariant{name: ls.name, note: "the library: Acquire, then Release", ctr: ls.ctr,
			pair: func(ctx context.Context, key string) (time.Time, error) {
				h, err := inst.acquire(ctx, key)
				t1 := time.Now()
				if err != nil {
					return t1, err
				}
				return t1, h.release(ctx)
			}})
	}
	ctr := &counters{}
	rdb := goRedisClient(b.addr, ctr)
	closeAll := func() { _ = rdb.Close() }
	const ttl = int64(lockTTL / time.Millisecond)
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s:%d", host, os.Getpid())
	script2 := func(name, note string, acq, rel *redis.Script) {
		vs = append(vs, &anatomyVariant{name: name, note: note, ctr: ctr,
			pair: func(ctx context.Context, key string) (time.Time, error) {
				rkey := "renewlock:" + key
				owner := ownerID()
				err := acq.Run(ctx, rdb, []string{rkey}, acquireArgs(owner, ttl, holder)...).Err()
				t1 := time.Now()
				if err != nil {
					return t1, err
				}
				return t1, rel.Run(ctx, rdb, []string{rkey}, releaseArgs(owner, ttl)...).Err()
			}})
	}
	acqSrc, err1 := libScript(b.cfg.ScriptsDir, "acquire.lua")
	relSrc, err2 := libScript(b.cfg.ScriptsDir, "release.lua")
	if err1 != nil || err2 != nil {
		logf("S1X: renewlock's scripts not found in %s (-scripts-dir): raw script variants left out", b.cfg.ScriptsDir)
	} else {
		acq, rel := redis.NewScript(acqSrc), redis.NewScript(relSrc)
		script2("raw-scripts", "go-redis EVALSHA of acquire.lua and release.lua with the library's arguments, no library code", acq, rel)
		script2("raw-slim-acquire", "as raw-scripts, acquire writes only o and t (no holder h, no acquired-at a)", redis.NewScript(slimAcquireSrc), rel)
		script2("raw-no-publish", "as raw-scripts, release without PUBLISH", acq, redis.NewScript(quietReleaseSrc))
		script2("raw-slim-both", "slim acquire and release without PUBLISH", redis.NewScript(slimAcquireSrc), redis.NewScript(quietReleaseSrc))
	}
	empty := redis.NewScript(emptyScriptSrc)
	script2("raw-empty-scripts", "two EVALSHA of `return {1,1}` with the same keys and arguments: the cost of calling a script", empty, empty)
	vs = append(vs, &anatomyVariant{name: "raw-setnx-cad", note: "SET NX PX, then the minimal lock's compare-and-delete script (the minimal lock without its wrapper)", ctr: ctr,
		pair: func(ctx context.Context, key string) (time.Time, error) {
			k, owner := "minimal:"+key, ownerID()
			err := rdb.SetNX(ctx, k, owner, lockTTL).Err()
			t1 := time.Now()
			if err != nil {
				return t1, err
			}
			return t1, minimalRelease.Run(ctx, rdb, []string{k}, owner).Err()
		}})
	vs = append(vs, &anatomyVariant{name: "raw-setnx-del", note: "SET NX PX, then DEL: two plain commands", ctr: ctr,
		pair: func(ctx context.Context, key string) (time.Time, error) {
			k := "minimal:" + key
			err := rdb.SetNX(ctx, k, "x", lockTTL).Err()
			t1 := time.Now()
			if err != nil {
				return t1, err
			}
			return t1, rdb.Del(ctx, k).Err()
		}})
	vs = append(vs, &anatomyVariant{name: "raw-2-pings", note: "two PINGs: the floor of two round trips", ctr: ctr,
		pair: func(ctx context.Context, _ string) (time.Time, error) {
			err := rdb.Ping(ctx).Err()
			t1 := time.Now()
			if err != nil {
				return t1, err
			}
			return t1, rdb.Ping(ctx).Err()
		}})
	if b.cfg.S1XVariants != "" {
		want := strings.Split(b.cfg.S1XVariants, ",")
		vs = slices.DeleteFunc(vs, func(v *anatomyVariant) bool { return !slices.Contains(want, v.name) })
	}
	// Load every script once, so that no window sees a NOSCRIPT.
	ctx := context.Background()
	for _, v := range vs {
		if _, err := v.pair(ctx, "s1x:load:"+v.name); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("S1X %s: %w", v.name, err)
		}
	}
	return vs, closeAll, nil
}

var anatomyMetrics = []metrics.Sample{
	{Name: "/gc/heap/allocs:objects"},
	{Name: "/gc/heap/allocs:bytes"},
	{Name: "/sched/goroutines-created:goroutines"},
	{Name: "/gc/cycles/total:gc-cycles"},
	{Name: "/cpu/classes/gc/total:cpu-seconds"},
}

// procSnap is this process's counters: allocations, goroutines created, GC
// cycles and GC CPU (runtime/metrics; GC CPU is the runtime's estimate), and
// context switches of its threads (getrusage: voluntary ones are mostly
// threads blocking until the socket is readable; involuntary ones,
// preemptions by other processes).
type procSnap struct {
	allocs, bytes, gor, gcs uint64
	gcCPU                   float64
	nvcsw, nivcsw           int64
}

func readProc() procSnap {
	s := slices.Clone(anatomyMetrics)
	metrics.Read(s)
	u := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	var gcCPU float64
	if s[4].Value.Kind() == metrics.KindFloat64 {
		gcCPU = s[4].Value.Float64()
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return procSnap{u(0), u(1), u(2), u(3), gcCPU, ru.Nvcsw, ru.Nivcsw}
}

// anatomy runs S1X.
func (b *bench) anatomy() (map[string]*anatomyRes, []string, error) {
	vs, closeAll, err := b.anatomyVariants()
	if err != nil {
		return nil, nil, err
	}
	defer closeAll()
	out := map[string]*anatomyRes{}
	var names []string
	for _, v := range vs {
		out[v.name] = &anatomyRes{Note: v.note, calls: map[string]int64{}, usec: map[string]int64{}}
		names = append(names, v.name)
	}
	ctx := context.Background()
	for r := 0; r < b.cfg.Rounds; r++ {
		k := r % len(vs)
		for _, v := range append(slices.Clone(vs[k:]), vs[:k]...) {
			logf("S1X round %d %s", r+1, v.name)
			res := out[v.name]
			time.Sleep(20 * time.Millisecond) // let earlier background work drain
			s0, err := snapshot(ctx, b.admin)
			if err != nil {
				return nil, nil, err
			}
			c0 := v.ctr.snap()
			p0 := readProc()
			cpu0 := cpuTime()
			before := len(res.pair)
			start := time.Now()
			stop := start.Add(b.cfg.S1X)
			pprof.Do(ctx, pprof.Labels("s1x", v.name), func(ctx context.Context) {
				for i := 0; time.Now().Before(stop); i++ {
					octx, cancel := context.WithTimeout(ctx, opTimeout)
					t0 := time.Now()
					t1, err := v.pair(octx, fmt.Sprintf("s1x:%s:%d:%d", v.name, r, i))
					t2 := time.Now()
					cancel()
					if err != nil {
						res.Errors++
						continue
					}
					res.pair = append(res.pair, t2.Sub(t0))
					res.op1 = append(res.op1, t1.Sub(t0))
					res.op2 = append(res.op2, t2.Sub(t1))
				}
			})
			el := time.Since(start)
			if n := len(res.pair) - before; n > 0 {
				var sum time.Duration
				for _, d := range res.pair[before:] {
					sum += d
				}
				res.RoundMeanUs = append(res.RoundMeanUs, float64(sum.Nanoseconds())/1e3/float64(n))
			}
			res.clientCPU += cpuTime() - cpu0
			p1 := readProc()
			c1 := v.ctr.snap().sub(c0)
			s1, err := snapshot(ctx, b.admin)
			if err != nil {
				return nil, nil, err
			}
			res.Seconds += el.Seconds()
			res.redisCPU += s1.cpu - s0.cpu
			for cmd, n := range cmdDelta(s0, s1) {
				res.calls[cmd] += n
				res.usec[cmd] += s1.usec[cmd] - s0.usec[cmd]
			}
			res.allocs += p1.allocs - p0.allocs
			res.bytes += p1.bytes - p0.bytes
			res.gor += p1.gor - p0.gor
			res.gcs += p1.gcs - p0.gcs
			res.gcCPU += p1.gcCPU - p0.gcCPU
			res.nvcsw += p1.nvcsw - p0.nvcsw
			res.nivcsw += p1.nivcsw - p0.nivcsw
			res.rt += c1.roundTrips
			res.writes += c1.writes
		}
	}
	for _, res := range out {
		res.Pairs = len(res.pair)
		res.Pair, res.First, res.Second = summarize(res.pair), summarize(res.op1), summarize(res.op2)
		if res.Pairs == 0 {
			continue
		}
		f := float64(res.Pairs)
		res.PairsPerSec = f / res.Seconds
		res.MeanPairUs = res.Pair.Mean * 1000
		rm := slices.Clone(res.RoundMeanUs)
		slices.Sort(rm)
		if len(rm) > 0 {
			res.MedianRoundUs = rm[len(rm)/2]
		}
		res.ClientCPUus = float64(res.clientCPU.Nanoseconds()) / 1e3 / f
		res.RedisCPUus = res.redisCPU * 1e6 / f
		res.CallsPerPair, res.UsecPerCall = map[string]float64{}, map[string]float64{}
		for cmd, n := range res.calls {
			res.CallsPerPair[cmd] = float64(n) / f
			if n > 0 {
				res.UsecPerCall[cmd] = float64(res.usec[cmd]) / float64(n)
			}
		}
		res.ScriptUs = float64(res.usec["evalsha"]+res.usec["eval"]) / f
		// Commands sent by the client (not run inside a script).
		for _, cmd := range []string{"set", "ping"} {
			res.TopLevelUs += float64(res.usec[cmd]) / f
		}
		if res.calls["evalsha"] == 0 && res.calls["del"] > 0 {
			res.TopLevelUs += float64(res.usec["del"]) / f
		}
		res.TopLevelUs += res.ScriptUs
		res.AllocsPerPair = float64(res.allocs) / f
		res.BytesPerPair = float64(res.bytes) / f
		res.GoroutinesNew = float64(res.gor) / f
		res.GCPerKPairs = float64(res.gcs) * 1000 / f
		res.GCCPUus = res.gcCPU * 1e6 / f
		res.VolCtxSw = float64(res.nvcsw) / f
		res.InvolCtxSw = float64(res.nivcsw) / f
		res.RoundTrips = float64(res.rt) / f
		res.SocketWrites = float64(res.writes) / f
	}
	return out, names, nil
}

func writeAnatomy(p func(string, ...any), res map[string]*anatomyRes, names []string, rounds int, d time.Duration) {
	p("### S1X anatomy of a serial uncontended pair (%v per variant per round, %d rounds)\n\n", d, rounds)
	p("Process-wide client numbers (CPU, allocations, schedulings) include the bench loop itself (a key formatted per pair, one context with timeout), alike for every variant.\n\n")
	p("| variant | pairs/s | mean µs | median of round means µs | p50 µs | 1st call p50 µs | 2nd call p50 µs | client CPU µs | GC CPU µs | Redis CPU µs | Redis cmd time µs | allocs | bytes | goroutines | ctx switches vol/invol | round trips | Redis calls × µs/call |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, n := range names {
		r := res[n]
		var parts []string
		for cmd, c := range r.CallsPerPair {
			parts = append(parts, fmt.Sprintf("%s %.2f×%.1fµs", cmd, c, r.UsecPerCall[cmd]))
		}
		slices.Sort(parts)
		p("| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f | %.3f | %.2f / %.2f | %.2f | %s |\n",
			n, r.PairsPerSec, r.MeanPairUs, r.MedianRoundUs, r.Pair.P50*1000, r.First.P50*1000, r.Second.P50*1000, r.ClientCPUus, r.GCCPUus, r.RedisCPUus, r.TopLevelUs,
			r.AllocsPerPair, r.BytesPerPair, r.GoroutinesNew, r.VolCtxSw, r.InvolCtxSw, r.RoundTrips, strings.Join(parts, ", "))
	}
	p("\n")
	for _, n := range names {
		p("- **%s**: %s\n", n, res[n].Note)
	}
	p("\n")
}

// Script cost: the Redis side of a pair alone. Each variant runs its pairs
// in pipelines of 100 (acquire then release of the same fresh key), so that
// network and wake-ups are amortised and what is left is what Redis spends
// per pair: commandstats time (the command bodies, scripts including the
// commands they run) and INFO cpu (also parsing and replies).

// stringLockAcquireSrc/stringLockReleaseSrc price a string-valued lock key
// ("owner token holder acquired-at" in one SET with PX) instead of a hash
// with a separate PEXPIRE: acquire GET, TIME, SET; release GET, TIME, DEL,
// PUBLISH.
const (
	stringLockAcquireSrc = `local cur = redis.call('GET', KEYS[1])
local last
if cur then
  local owner, tok = string.match(cur, '^(%S*) (%S+)')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(tok)}
  end
  if owner ~= '' then
    return {0, redis.call('PTTL', KEYS[1])}
  end
  last = tonumber(tok)
end
local now = redis.call('TIME')
local token = tonumber(now[1]) * 1000000 + tonumber(now[2])
if last and last >= token then token = last + 1 end
local t = string.format('%.0f', token)
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. t .. ' ' .. ARGV[3] .. ' ' .. t, 'PX', ARGV[2])
return {1, token}`
	stringLockReleaseSrc = `local cur = redis.call('GET', KEYS[1])
if not cur then return {0, 0} end
local owner, tok = string.match(cur, '^(%S*) (%S+)')
if owner ~= ARGV[1] then return {0, 0} end
local now = redis.call('TIME')
if tonumber(tok) < tonumber(now[1]) * 1000000 + tonumber(now[2]) then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ' ' .. tok, 'PX', ARGV[3])
end
return {1, redis.call('PUBLISH', ARGV[2], '')}`
	// Without the server clock (prices TIME): token = last + 1 (from a
	// tombstone) or 1; release always deletes.
	noClockAcquireSrc = `local cur = redis.call('HMGET', KEYS[1], 'o', 't')
if cur[1] then
  if cur[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(cur[2])}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
local token = (tonumber(cur[2]) or 0) + 1
redis.call('HSET', KEYS[1], 'o', ARGV[1], 't', token, 'h', ARGV[3], 'a', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, token}`
	noClockReleaseSrc = `local cur = redis.call('HGET', KEYS[1], 'o')
if cur ~= ARGV[1] then
  return {0, 0}
end
redis.call('DEL', KEYS[1])
return {1, redis.call('PUBLISH', ARGV[2], '')}`
)

// scriptCostRes is the Redis side of one variant, per pair.
type scriptCostRes struct {
	Note       string             `json:"note"`
	Pairs      int                `json:"pairs"`
	CmdUs      float64            `json:"redis_command_us_per_pair"`
	RedisCPUus float64            `json:"redis_cpu_us_per_pair"`
	Calls      map[string]float64 `json:"calls_per_pair"`
	UsecPer    map[string]float64 `json:"usec_per_call"`
}

type scriptPair struct {
	name, note string
	// add queues one pair on pipe.
	add func(ctx context.Context, pipe redis.Pipeliner, key string)
	// top lists the commands sent by the client (not run by a script).
	top []string
}

func (b *bench) scriptCosts(pairs int) (map[string]*scriptCostRes, []string, error) {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: b.addr})
	defer rdb.Close()
	const ttl = int64(lockTTL / time.Millisecond)
	holder := "bench-host:12345"
	src := func(name string) string {
		data, _ := libScript(b.cfg.ScriptsDir, name)
		return data
	}
	var vs []scriptPair
	scripts := func(name, note string, acq, rel string) {
		if acq == "" || rel == "" {
			return
		}
		a, r := redis.NewScript(acq), redis.NewScript(rel)
		vs = append(vs, scriptPair{name: name, note: note, top: []string{"evalsha"}, add: func(ctx context.Context, pipe redis.Pipeliner, key string) {
			rkey, owner := "renewlock:"+key, ownerID()
			a.EvalSha(ctx, pipe, []string{rkey}, acquireArgs(owner, ttl, holder)...)
			r.EvalSha(ctx, pipe, []string{rkey}, releaseArgs(owner, ttl)...)
		}})
	}
	acqSrc, relSrc := src("acquire.lua"), src("release.lua")
	scripts("renewlock", "acquire.lua + release.lua", acqSrc, relSrc)
	scripts("slim-acquire", "acquire writes o and t only (no h, a; one string.format less)", slimAcquireSrc, relSrc)
	scripts("no-publish", "release without PUBLISH", acqSrc, quietReleaseSrc)
	scripts("string-value", "lock as a string \"owner token holder at\" set with PX: acquire GET+TIME+SET, release GET+TIME+DEL+PUBLISH", stringLockAcquireSrc, stringLockReleaseSrc)
	scripts("no-clock", "no TIME (token = last+1), release HGET+DEL+PUBLISH: prices the clock, not a proposal", noClockAcquireSrc, noClockReleaseSrc)
	scripts("empty-scripts", "two EVALSHA of `return {1,1}`", emptyScriptSrc, emptyScriptSrc)
	vs = append(vs, scriptPair{name: "minimal", note: "SET NX PX + compare-and-delete script", top: []string{"set", "evalsha"},
		add: func(ctx context.Context, pipe redis.Pipeliner, key string) {
			k, owner := "minimal:"+key, ownerID()
			pipe.SetNX(ctx, k, owner, lockTTL)
			minimalRelease.EvalSha(ctx, pipe, []string{k}, owner)
		}})
	vs = append(vs, scriptPair{name: "setnx-del", note: "SET NX PX + DEL", top: []string{"set", "del"},
		add: func(ctx context.Context, pipe redis.Pipeliner, key string) {
			k := "minimal:" + key
			pipe.SetNX(ctx, k, "x", lockTTL)
			pipe.Del(ctx, k)
		}})
	// Load the scripts.
	for _, s := range []string{acqSrc, relSrc, slimAcquireSrc, quietReleaseSrc, stringLockAcquireSrc, stringLockReleaseSrc,
		noClockAcquireSrc, noClockReleaseSrc, emptyScriptSrc} {
		if s != "" {
			if err := redis.NewScript(s).Load(ctx, rdb).Err(); err != nil {
				return nil, nil, fmt.Errorf("script cost: loading a script: %w", err)
			}
		}
	}
	if err := minimalRelease.Load(ctx, rdb).Err(); err != nil {
		return nil, nil, err
	}
	out := map[string]*scriptCostRes{}
	var names []string
	for _, v := range vs {
		out[v.name] = &scriptCostRes{Note: v.note, Calls: map[string]float64{}, UsecPer: map[string]float64{}}
		names = append(names, v.name)
	}
	const batch = 100
	rounds := max(1, b.cfg.Rounds)
	per := max(1, (pairs/rounds+batch-1)/batch) * batch
	calls, usec := map[string]map[string]int64{}, map[string]map[string]int64{}
	cpu := map[string]float64{}
	for r := 0; r < rounds; r++ {
		k := r % len(vs)
		for _, v := range append(slices.Clone(vs[k:]), vs[:k]...) {
			s0, err := snapshot(ctx, b.admin)
			if err != nil {
				return nil, nil, err
			}
			for i := 0; i < per; i += batch {
				pipe := rdb.Pipeline()
				for j := i; j < i+batch; j++ {
					v.add(ctx, pipe, fmt.Sprintf("sc:%s:%d:%d", v.name, r, j))
				}
				cmds, err := pipe.Exec(ctx)
				if err != nil {
					return nil, nil, fmt.Errorf("script cost %s: %w", v.name, err)
				}
				_ = cmds
			}
			s1, err := snapshot(ctx, b.admin)
			if err != nil {
				return nil, nil, err
			}
			if calls[v.name] == nil {
				calls[v.name], usec[v.name] = map[string]int64{}, map[string]int64{}
			}
			for c, n := range cmdDelta(s0, s1) {
				calls[v.name][c] += n
				usec[v.name][c] += s1.usec[c] - s0.usec[c]
			}
			cpu[v.name] += s1.cpu - s0.cpu
			out[v.name].Pairs += per
		}
	}
	for _, v := range vs {
		res := out[v.name]
		f := float64(res.Pairs)
		for c, n := range calls[v.name] {
			res.Calls[c] = float64(n) / f
			res.UsecPer[c] = float64(usec[v.name][c]) / float64(n)
		}
		for _, c := range v.top {
			res.CmdUs += float64(usec[v.name][c]) / f
		}
		res.RedisCPUus = cpu[v.name] * 1e6 / f
	}
	return out, names, nil
}

func writeScriptCosts(p func(string, ...any), res map[string]*scriptCostRes, names []string) {
	p("### S1X Redis side of a pair, pipelined (100 pairs per pipeline)\n\n")
	p("| variant | pairs | Redis command time µs/pair | Redis CPU µs/pair | calls × µs/call | what |\n|---|---:|---:|---:|---|---|\n")
	for _, n := range names {
		r := res[n]
		var parts []string
		for c, k := range r.Calls {
			parts = append(parts, fmt.Sprintf("%s %.2f×%.2f", c, k, r.UsecPer[c]))
		}
		slices.Sort(parts)
		p("| %s | %d | %.2f | %.2f | %s | %s |\n", n, r.Pairs, r.CmdUs, r.RedisCPUus, strings.Join(parts, ", "), r.Note)
	}
	p("\n")
}

// benchChannel stands for a Client's grant channel in the raw variants.
const benchChannel = "renewlock:grant:bench"

// acquireArgs are acquire.lua's arguments as the library sends them for a
// mutex that joins the queue if held: owner id, TTL ms, holder text, join,
// grant channel, kind. The other acquire variants read the first three.
func acquireArgs(owner string, ttl int64, holder string) []any {
	return []any{owner, ttl, holder, "1", benchChannel, ""}
}

// releaseArgs are release.lua's arguments (owner id, grant channel) and the
// TTL, which the release variants read as ARGV[3] (a channel to publish
// on, if any, as ARGV[2]).
func releaseArgs(owner string, ttl int64) []any {
	return []any{owner, benchChannel, ttl}
}

// libScript is a script of the library as it runs it: lib.lua, then the
// script's own part (see newScript in the root package).
func libScript(dir, name string) (string, error) {
	lib, err := os.ReadFile(filepath.Join(dir, "lib.lua"))
	if err != nil {
		return "", err
	}
	own, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return string(lib) + "\n" + string(own), nil
}
