package main

// S9: semaphore (issue 10). renewlock's AcquirePermit against the peers,
// which have no semaphore: the usual substitute is a semaphore made of
// LIMIT mutex keys (name:0 … name:LIMIT−1), where a permit is whichever key
// one manages to take, trying them in random order and sleeping 1 ms after
// a pass that found all taken. Built on bsm/redislock (Obtain without
// retry) and rueidislock with one key per lock (TryWithContext).
//
// S10: read-write lock (issue 10), a read-heavy mix. renewlock's
// AcquireRead/AcquireWrite against a single mutex for every operation (what
// one uses without a read-write lock): renewlock's own and the peers'.
//
// Both: G goroutines on the two instances of each library (as S3), each
// looping acquire → hold → release on one name for a window per round,
// libraries interleaved per round.

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/rueidis/rueidislock"
)

// A permitter takes one of limit permits of name.
type permitter interface {
	permit(ctx context.Context, name string, limit int) (held, error)
}

// permitLib is one library in S9: its name, which bench library's instances
// it uses, and how it takes a permit with one of them.
type permitLib struct {
	name, base, note string
	make             func(instance) permitter
}

var permitLibs = []permitLib{
	{name: "renewlock", base: "renewlock", note: "AcquirePermit: one hash, FIFO queue, pub/sub hand-off",
		make: func(in instance) permitter { return rlPermits{in.(*renewlockInst)} }},
	{name: "redislock×L", base: "redislock-1ms", note: "L mutex keys, Obtain without retry in random order, 1 ms sleep after a full pass",
		make: func(in instance) permitter { return keyPermits{try: redislockTry(in.(*redislockInst))} }},
	{name: "rueidislock×L", base: "rueidislock-1key", note: "L mutex keys (KeyMajority 1), TryWithContext in random order, 1 ms sleep after a full pass",
		make: func(in instance) permitter { return keyPermits{try: rueidisTry(in.(*rueidislockInst))} }},
}

type rlPermits struct{ r *renewlockInst }

func (p rlPermits) permit(ctx context.Context, name string, limit int) (held, error) {
	l, err := p.r.c.AcquirePermit(ctx, name, limit)
	if err != nil {
		return nil, err
	}
	return renewlockHeld{l}, nil
}

// keyPermits is a semaphore of limit mutex keys.
type keyPermits struct {
	try func(ctx context.Context, key string) (held, bool, error)
}

func (p keyPermits) permit(ctx context.Context, name string, limit int) (held, error) {
	for {
		for _, i := range mrand.Perm(limit) {
			h, ok, err := p.try(ctx, fmt.Sprintf("%s:%d", name, i))
			if err != nil {
				return nil, err
			}
			if ok {
				return h, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func redislockTry(r *redislockInst) func(context.Context, string) (held, bool, error) {
	return func(ctx context.Context, key string) (held, bool, error) {
		l, err := r.c.Obtain(ctx, "redislock:"+key, lockTTL, nil)
		switch {
		case errors.Is(err, redislock.ErrNotObtained):
			return nil, false, nil
		case err != nil:
			return nil, false, err
		}
		return redislockHeld{l}, true, nil
	}
}

func rueidisTry(r *rueidislockInst) func(context.Context, string) (held, bool, error) {
	return func(ctx context.Context, key string) (held, bool, error) {
		// The lock lives as long as the context it was taken with.
		_, cancel, err := r.l.TryWithContext(context.Background(), key)
		switch {
		case errors.Is(err, rueidislock.ErrNotLocked):
			return nil, false, nil
		case err != nil:
			return nil, false, err
		}
		return rueidislockHeld{cancel}, true, nil
	}
}

// rwOp takes name for reading or writing.
type rwLocker interface {
	lock(ctx context.Context, name string, write bool) (held, error)
}

// rwLib is one library in S10.
type rwLib struct {
	name, base, note string
	make             func(instance) rwLocker
}

var rwLibs = []rwLib{
	{name: "renewlock-rw", base: "renewlock", note: "AcquireRead / AcquireWrite",
		make: func(in instance) rwLocker { return rlRW{in.(*renewlockInst)} }},
	{name: "renewlock-mutex", base: "renewlock", note: "Acquire for every operation",
		make: func(in instance) rwLocker { return mutexRW{in} }},
	{name: "redislock-10ms", base: "redislock-10ms", note: "one mutex for every operation, LinearBackoff(10 ms)",
		make: func(in instance) rwLocker { return mutexRW{in} }},
	{name: "redislock-1ms", base: "redislock-1ms", note: "one mutex for every operation, LinearBackoff(1 ms)",
		make: func(in instance) rwLocker { return mutexRW{in} }},
	{name: "rueidislock-1key", base: "rueidislock-1key", note: "one mutex for every operation",
		make: func(in instance) rwLocker { return mutexRW{in} }},
}

type rlRW struct{ r *renewlockInst }

func (l rlRW) lock(ctx context.Context, name string, write bool) (held, error) {
	acq := l.r.c.AcquireRead
	if write {
		acq = l.r.c.AcquireWrite
	}
	x, err := acq(ctx, name)
	if err != nil {
		return nil, err
	}
	return renewlockHeld{x}, nil
}

type mutexRW struct{ in instance }

func (m mutexRW) lock(ctx context.Context, name string, _ bool) (held, error) {
	return m.in.acquire(ctx, name)
}

// familyRes is the outcome of S9 or S10 for one library.
type familyRes struct {
	Note         string             `json:"note"`
	Acquisitions int                `json:"acquisitions"`
	Seconds      float64            `json:"seconds"`
	AcqPerSec    float64            `json:"acq_per_sec"`
	Wait         dist               `json:"wait"`
	ReadWait     *dist              `json:"read_wait,omitempty"`
	WriteWait    *dist              `json:"write_wait,omitempty"`
	Reads        int                `json:"reads,omitempty"`
	Writes       int                `json:"writes,omitempty"`
	MaxInside    int64              `json:"max_inside"` // most holders at once
	MaxWaitMs    float64            `json:"max_wait_ms"`
	PerGoroutine []int              `json:"per_goroutine"`
	Fairness     ratio              `json:"fairness_max_over_min"`
	Violations   int64              `json:"violations"`
	Errors       int                `json:"errors"`
	CmdsPerAcq   float64            `json:"redis_commands_per_acq"`
	ByCommand    map[string]float64 `json:"redis_commands_per_acq_by_command"`
	RedisCPUPer  float64            `json:"redis_cpu_us_per_acq"`
	waits        []time.Duration
	rwaits       []time.Duration
	wwaits       []time.Duration
	cmds         map[string]int64
	cpu          float64
}

func (f *familyRes) finish() {
	c := contRes{PerGoroutine: f.PerGoroutine, waits: f.waits}
	c.finish()
	f.Wait, f.Fairness = c.Wait, c.Fairness
	f.MaxWaitMs = max(f.MaxWaitMs, f.Wait.Max)
	if f.Seconds > 0 {
		f.AcqPerSec = float64(f.Acquisitions) / f.Seconds
	}
	if len(f.rwaits)+len(f.wwaits) > 0 {
		r, w := summarize(f.rwaits), summarize(f.wwaits)
		f.ReadWait, f.WriteWait = &r, &w
	}
	f.ByCommand = map[string]float64{}
	if f.Acquisitions > 0 {
		a := float64(f.Acquisitions)
		var all int64
		for k, v := range f.cmds {
			f.ByCommand[k] = float64(v) / a
			all += v
		}
		f.CmdsPerAcq = float64(all) / a
		f.RedisCPUPer = f.cpu * 1e6 / a
	}
}

type familyOut struct {
	Goroutines int                   `json:"goroutines"`
	Limit      int                   `json:"limit,omitempty"`
	ReadRatio  float64               `json:"read_ratio,omitempty"`
	Hold       string                `json:"hold"`
	Window     string                `json:"window_per_round"`
	Results    map[string]*familyRes `json:"results"`
	Order      []string              `json:"libraries"`
}

// runFamilyScenario runs S9 (rw false) or S10 (rw true) for every library
// whose instances the bench has open.
func (b *bench) runFamilyScenario(rw bool) (*familyOut, error) {
	cfg := b.cfg
	out := &familyOut{Goroutines: cfg.S9Workers, Hold: cfg.S9Hold.String(), Window: cfg.S9.String(), Results: map[string]*familyRes{}}
	if rw {
		out.ReadRatio = cfg.S10ReadRatio
	} else {
		out.Limit = cfg.S9Limit
	}
	type entry struct {
		name string
		ls   *libState
		op   func(in instance) func(ctx context.Context, name string, write bool) (held, error)
	}
	var entries []entry
	find := func(base string) *libState {
		i := slices.IndexFunc(b.libs, func(ls *libState) bool { return ls.name == base })
		if i < 0 {
			return nil
		}
		return b.libs[i]
	}
	if rw {
		for _, l := range rwLibs {
			if ls := find(l.base); ls != nil {
				entries = append(entries, entry{l.name, ls, func(in instance) func(context.Context, string, bool) (held, error) { return l.make(in).lock }})
				out.Results[l.name] = &familyRes{Note: l.note, cmds: map[string]int64{}}
			}
		}
	} else {
		limit := cfg.S9Limit
		for _, l := range permitLibs {
			if ls := find(l.base); ls != nil {
				entries = append(entries, entry{l.name, ls, func(in instance) func(context.Context, string, bool) (held, error) {
					p := l.make(in)
					return func(ctx context.Context, name string, _ bool) (held, error) { return p.permit(ctx, name, limit) }
				}})
				out.Results[l.name] = &familyRes{Note: l.note, cmds: map[string]int64{}}
			}
		}
	}
	for _, e := range entries {
		out.Order = append(out.Order, e.name)
	}
	if len(entries) == 0 {
		return nil, errors.New("none of its libraries is selected")
	}
	scen := "S9"
	if rw {
		scen = "S10"
	}
	for r := 0; r < cfg.Rounds; r++ {
		k := r % len(entries)
		for _, e := range append(slices.Clone(entries[k:]), entries[:k]...) {
			logf("%s round %d %s", scen, r+1, e.name)
			ops := [2]func(context.Context, string, bool) (held, error){e.op(e.ls.inst[0]), e.op(e.ls.inst[1])}
			if err := b.familyWindow(ops, fmt.Sprintf("%s:%s:%d", strings.ToLower(scen), e.name, r), rw, out.Results[e.name]); err != nil {
				return nil, fmt.Errorf("%s %s: %w", scen, e.name, err)
			}
		}
	}
	for _, r := range out.Results {
		r.finish()
	}
	return out, nil
}

// familyWindow runs one window: G goroutines, half on each instance, loop
// acquire → hold → release on name. In S10 each acquisition is a write
// with probability 1 − S10ReadRatio. A counter checks the kind's exclusion.
func (b *bench) familyWindow(ops [2]func(context.Context, string, bool) (held, error), name string, rw bool, res *familyRes) error {
	cfg := b.cfg
	g := cfg.S9Workers
	if res.PerGoroutine == nil {
		res.PerGoroutine = make([]int, g)
	}
	limit := int64(cfg.S9Limit)
	var readers, writers, inside, maxInside atomic.Int64
	var viol atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	win, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := make(chan struct{})
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := ops[i%2]
			<-start
			var waits, rwaits, wwaits []time.Duration
			n, errs, reads, writes := 0, 0, 0, 0
			var censored time.Duration
			for win.Err() == nil {
				write := rw && mrand.Float64() >= cfg.S10ReadRatio
				t0 := time.Now()
				h, err := op(win, name, write)
				if err != nil {
					if win.Err() != nil {
						censored = time.Since(t0)
						break
					}
					errs++
					time.Sleep(time.Millisecond)
					continue
				}
				w := time.Since(t0)
				if win.Err() != nil {
					rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
					_ = h.release(rctx)
					rcancel()
					break
				}
				waits = append(waits, w)
				n++
				now := inside.Add(1)
				for m := maxInside.Load(); now > m && !maxInside.CompareAndSwap(m, now); m = maxInside.Load() {
				}
				switch {
				case !rw && now > limit:
					viol.Add(1)
				case rw && write:
					writes++
					wwaits = append(wwaits, w)
					if writers.Add(1) != 1 || readers.Load() != 0 {
						viol.Add(1)
					}
				case rw:
					reads++
					rwaits = append(rwaits, w)
					readers.Add(1)
					if writers.Load() != 0 {
						viol.Add(1)
					}
				}
				time.Sleep(cfg.S9Hold)
				switch {
				case rw && write:
					writers.Add(-1)
				case rw:
					readers.Add(-1)
				}
				inside.Add(-1)
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				if err := h.release(rctx); err != nil {
					errs++
				}
				rcancel()
			}
			mu.Lock()
			res.waits = append(res.waits, waits...)
			res.rwaits = append(res.rwaits, rwaits...)
			res.wwaits = append(res.wwaits, wwaits...)
			res.Acquisitions += n
			res.Reads += reads
			res.Writes += writes
			res.PerGoroutine[i] += n
			res.Errors += errs
			res.MaxWaitMs = max(res.MaxWaitMs, ms(censored))
			mu.Unlock()
		}()
	}
	ctx := context.Background()
	s0, err := snapshot(ctx, b.admin)
	if err != nil {
		return err
	}
	t0 := time.Now()
	close(start)
	time.Sleep(cfg.S9)
	cancel()
	el := time.Since(t0)
	s1, err := snapshot(ctx, b.admin)
	if err != nil {
		return err
	}
	wg.Wait()
	res.Seconds += el.Seconds()
	res.Violations += viol.Load()
	res.MaxInside = max(res.MaxInside, maxInside.Load())
	for k, v := range cmdDelta(s0, s1) {
		res.cmds[k] += v
	}
	res.cpu += s1.cpu - s0.cpu
	return nil
}

func writeS9(p func(string, ...any), s *familyOut, rounds int) {
	p("### S9 semaphore: %d goroutines in 2 clients, limit %d, hold %s\n\n", s.Goroutines, s.Limit, s.Hold)
	p("%s window per library per round, %d rounds. Peers have no semaphore: theirs is made of %d mutex keys (see the notes). "+
		"*max inside* = most permits held at once (must be ≤ %d); Redis commands per acquisition include those run inside scripts.\n\n", s.Window, rounds, s.Limit, s.Limit)
	p("| library | acq/s | wait p50 / p99 / max ms | fairness max/min | max inside | violations | Redis cmds/acq | Redis CPU µs/acq | errors | how |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, n := range s.Order {
		r := s.Results[n]
		p("| %s | %.0f | %.2f / %.1f / %.0f | %s | %d | %d | %.1f | %.0f | %d | %s |\n", n, r.AcqPerSec, r.Wait.P50, r.Wait.P99, r.MaxWaitMs,
			r.Fairness, r.MaxInside, r.Violations, r.CmdsPerAcq, r.RedisCPUPer, r.Errors, r.Note)
	}
	p("\n")
}

func writeS10(p func(string, ...any), s *familyOut, rounds int) {
	p("### S10 read-write lock: %d goroutines in 2 clients, %.0f %% reads, hold %s\n\n", s.Goroutines, 100*s.ReadRatio, s.Hold)
	p("%s window per library per round, %d rounds. Without a read-write lock every operation takes one mutex. "+
		"*max inside* = most holders at once (readers share); violations: a writer beside anyone.\n\n", s.Window, rounds)
	p("| library | ops/s | read wait p50 / p99 ms | write wait p50 / p99 ms | max wait ms | max inside | violations | Redis cmds/op | Redis CPU µs/op | errors | how |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, n := range s.Order {
		r := s.Results[n]
		rw, ww := dist{}, dist{}
		if r.ReadWait != nil {
			rw, ww = *r.ReadWait, *r.WriteWait
		}
		p("| %s | %.0f | %.2f / %.1f | %.2f / %.1f | %.0f | %d | %d | %.1f | %.0f | %d | %s |\n", n, r.AcqPerSec, rw.P50, rw.P99, ww.P50, ww.P99,
			r.MaxWaitMs, r.MaxInside, r.Violations, r.CmdsPerAcq, r.RedisCPUPer, r.Errors, r.Note)
	}
	p("\n")
}
