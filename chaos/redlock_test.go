package chaos

// The Redlock scenarios: redlock Clients in this process contend for a few
// keys on N independent masters (real redis-server processes) while
// masters are paused, killed and restarted (empty, at once or one TTL
// later), alone or a majority, and while one client is cut off from every
// master. Every holder writes to the fenced register; the history goes
// through the same checker as the mutex's scenarios: (a) overlaps, (b) the
// register and porcupine, (c) loss before expiry, (d) takeover, (e) errors.
//
// Check (c) compares a loss with the latest expiry any master shows for
// the lock (the observer samples every master's hash, whose token is the
// Redlock's after the write-back, and LeaseHook adds every lease a master
// confirmed on the wire). That is weaker than the Redlock bound —
// a loss must come before a quorum could let the key expire — which the
// redlock package's TestPause measures per master.
//
//	go test -race -run TestRedlockChaos -v            # all
//	go test -race -run TestRedlockChaos -chaos.only=redlock-pause-majority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/chaos/internal/workload"
	"github.com/renewlock/renewlock/internal/redistest"
	"github.com/renewlock/renewlock/redlock"
)

// rlScenario is one fault injected in cycles on a Redlock of n masters.
type rlScenario struct {
	scenario
	masters int
	cycle   func(e *rlEnv, ttl time.Duration)
}

var rlScenarios = []rlScenario{
	{scenario{name: "redlock-pause-minority", injected: "SIGSTOP one master (in turn) for 2×TTL"}, 3,
		func(e *rlEnv, ttl time.Duration) { e.pause(e.next(1), 2*ttl); e.sleep(ttl) }},
	{scenario{name: "redlock-pause-majority", injected: "SIGSTOP 2 of 3 masters for 2×TTL"}, 3,
		func(e *rlEnv, ttl time.Duration) { e.pause(e.next(2), 2*ttl); e.sleep(2 * ttl) }},
	{scenario{name: "redlock5-pause-majority", injected: "SIGSTOP 3 of 5 masters for 2×TTL"}, 5,
		func(e *rlEnv, ttl time.Duration) { e.pause(e.next(3), 2*ttl); e.sleep(2 * ttl) }},
	{scenario{name: "redlock-restart-minority", injected: "SIGKILL one master mid-lease, restart empty at once", overlapAllowed: true}, 3,
		func(e *rlEnv, ttl time.Duration) { e.sleep(ttl / 2); e.restart(e.next(1), 0); e.sleep(2 * ttl) }},
	{scenario{name: "redlock-delayed-restart-minority", injected: "SIGKILL one master mid-lease, restart empty after 1×TTL"}, 3,
		func(e *rlEnv, ttl time.Duration) { e.sleep(ttl / 2); e.restart(e.next(1), ttl); e.sleep(2 * ttl) }},
	{scenario{name: "redlock-restart-majority", injected: "SIGKILL 2 of 3 masters mid-lease, restart empty at once", overlapAllowed: true}, 3,
		func(e *rlEnv, ttl time.Duration) { e.sleep(ttl / 2); e.restart(e.next(2), 0); e.sleep(2 * ttl) }},
	{scenario{name: "redlock-partition", injected: "one holding client cut off from every master for 2×TTL"}, 3,
		func(e *rlEnv, ttl time.Duration) { e.partition(2 * ttl); e.sleep(2 * ttl) }},
}

// rlCut fails every command of a go-redis client while cut is set.
type rlCut struct{ cut atomic.Bool }

var errRLCut = errors.New("partitioned (injected)")

func (*rlCut) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *rlCut) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.cut.Load() {
			cmd.SetErr(errRLCut)
			return errRLCut
		}
		return next(ctx, cmd)
	}
}
func (h *rlCut) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.cut.Load() {
			for _, c := range cmds {
				c.SetErr(errRLCut)
			}
			return errRLCut
		}
		return next(ctx, cmds)
	}
}

// rlEnv is one running Redlock scenario.
type rlEnv struct {
	t       *testing.T
	ttl     time.Duration
	masters []*redistest.Server
	keys    []string
	h       *History
	reg     *workload.Register
	clients []*redlock.Client
	cuts    [][]*rlCut // per client, per master
	warns   atomic.Int64
	turn    int // which masters the next fault hits

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	holding map[string]int // client → locks it holds
}

func newRLEnv(t *testing.T, sc rlScenario, ttl time.Duration, resource *redis.Client) *rlEnv {
	e := &rlEnv{t: t, ttl: ttl, h: NewHistory(), holding: make(map[string]int)}
	for range sc.masters {
		e.masters = append(e.masters, redistest.Start(t))
	}
	for i := range 3 {
		e.keys = append(e.keys, fmt.Sprintf("chaos/%s/k%d", sc.name, i))
	}
	e.reg = workload.NewRegister(resource, "reg/"+sc.name+"/")
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.h.onEvent = func(ev workload.Event) {
		switch ev.Kind {
		case workload.KindAcquire:
			e.mu.Lock()
			e.holding[workload.WorkerOf(ev.Worker)]++
			e.mu.Unlock()
		case workload.KindRelease:
			e.mu.Lock()
			e.holding[workload.WorkerOf(ev.Worker)]--
			e.mu.Unlock()
		}
	}
	e.calibrate()
	e.wg.Add(2)
	go e.observe()
	go func() {
		defer e.wg.Done()
		workload.Probe(e.ctx, InProcName, e.h.Emit)
	}()
	logger := slog.New(&countingHandler{n: &e.warns})
	for i := range 3 {
		var masters []redis.UniversalClient
		var cuts []*rlCut
		for _, s := range e.masters {
			cut := &rlCut{}
			rdb := s.Client(func(o *redis.Options) { o.ClientName = fmt.Sprintf("%sc%d", LockClientPrefix, i) })
			rdb.AddHook(cut)
			rdb.AddHook(&LeaseHook{H: e.h, Prefix: renewlock.DefaultKeyPrefix, TTL: ttl})
			masters = append(masters, rdb)
			cuts = append(cuts, cut)
		}
		c, err := redlock.New(masters, renewlock.WithTTL(ttl), renewlock.WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		e.clients = append(e.clients, c)
		e.cuts = append(e.cuts, cuts)
		for _, k := range e.keys {
			for j := range 2 {
				worker := fmt.Sprintf("c%d/%s#%d", i, k, j)
				e.wg.Add(1)
				go func() {
					defer e.wg.Done()
					e.loop(c, worker, k)
				}()
			}
		}
	}
	return e
}

// next returns the indexes of the n masters the next fault hits, in turn.
func (e *rlEnv) next(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (e.turn + i) % len(e.masters)
	}
	e.turn++
	return out
}

func (e *rlEnv) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-e.ctx.Done():
	}
}

func (e *rlEnv) pause(idx []int, d time.Duration) {
	end := e.h.AddFault(FaultRedisPause, "")
	for _, i := range idx {
		e.masters[i].Pause()
	}
	e.sleep(d)
	for _, i := range idx {
		e.masters[i].Resume()
	}
	end()
}

func (e *rlEnv) restart(idx []int, delay time.Duration) {
	end := e.h.AddFault(FaultRedisKill, "")
	for _, i := range idx {
		e.masters[i].Kill()
	}
	e.sleep(delay)
	for _, i := range idx {
		e.masters[i].Restart()
	}
	end()
}

// partition cuts a client that holds a lock (or the first) off from every
// master for d.
func (e *rlEnv) partition(d time.Duration) {
	victim := 0
	e.mu.Lock()
	for i := range e.clients {
		if e.holding[fmt.Sprintf("c%d", i)] > 0 {
			victim = i
			break
		}
	}
	e.mu.Unlock()
	end := e.h.AddFault(FaultPartition, fmt.Sprintf("c%d", victim))
	for _, c := range e.cuts[victim] {
		c.cut.Store(true)
	}
	e.sleep(d)
	for _, c := range e.cuts[victim] {
		c.cut.Store(false)
	}
	end()
}

// loop is workload.Run for a redlock Client: acquire (TryAcquire or a
// bounded Acquire), write to the fenced register while held, release.
func (e *rlEnv) loop(c *redlock.Client, worker, key string) {
	const writeEvery = 20 * time.Millisecond
	var seq atomic.Int64
	for e.ctx.Err() == nil {
		call := workload.Mono()
		var l *redlock.Lock
		var err error
		if rand.N(2) == 0 {
			l, err = c.TryAcquire(e.ctx, key)
		} else {
			actx, cancel := context.WithTimeout(e.ctx, 3*e.ttl)
			l, err = c.Acquire(actx, key)
			cancel()
		}
		ret := workload.Mono()
		if err != nil {
			if e.ctx.Err() != nil {
				return
			}
			e.h.Emit(workload.Event{Kind: workload.KindAcquireErr, Worker: worker, Key: key, Call: call, Ret: ret, Class: workload.Classify(err), Err: err.Error()})
			d := 20 * time.Millisecond
			if errors.Is(err, renewlock.ErrNotAcquired) {
				d = writeEvery
			}
			e.sleep(d/2 + rand.N(d))
			continue
		}
		e.h.Emit(workload.Event{Kind: workload.KindAcquire, Worker: worker, Key: key, Token: l.Token(), Call: call, Ret: ret})
		e.hold(l, worker, key, writeEvery, &seq)
	}
}

func (e *rlEnv) hold(l *redlock.Lock, worker, key string, writeEvery time.Duration, seq *atomic.Int64) {
	base := workload.Event{Worker: worker, Key: key, Token: l.Token()}
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		<-l.Done()
		ev := base
		ev.Kind, ev.Ret = workload.KindDone, workload.Mono()
		if err := l.Err(); err != nil {
			ev.Class, ev.Err = workload.Classify(err), err.Error()
		}
		e.h.Emit(ev)
	}()
	until := time.Now().Add(e.ttl/4 + rand.N(7*e.ttl/4))
	for e.ctx.Err() == nil && time.Now().Before(until) {
		select {
		case <-l.Done():
		default:
			ev := base
			ev.WID = fmt.Sprintf("%s#%d", worker, seq.Add(1))
			ev.Kind, ev.Call = workload.KindWriteStart, workload.Mono()
			e.h.Emit(ev)
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ok, err := e.reg.Write(wctx, key, l.Token(), ev.WID)
			cancel()
			ev.Ret = workload.Mono()
			if err != nil {
				ev.Kind, ev.Err = workload.KindWriteErr, err.Error()
			} else {
				ev.Kind, ev.OK = workload.KindWrite, ok
			}
			e.h.Emit(ev)
		}
		select {
		case <-l.Done():
		case <-e.ctx.Done():
		case <-time.After(writeEvery/2 + rand.N(writeEvery)):
			continue
		}
		break
	}
	ev := base
	ev.Kind, ev.Call = workload.KindRelease, workload.Mono()
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := l.Release(rctx)
	cancel()
	ev.Ret = workload.Mono()
	if err != nil {
		ev.Class, ev.Err = workload.Classify(err), err.Error()
	}
	e.h.Emit(ev)
	watcher.Wait()
}

// calibrate relates master 0's clock to workload.Mono (all masters run on
// this machine's clock), as Env.calibrate does.
func (e *rlEnv) calibrate() {
	rdb := e.masters[0].Client()
	best, bestRTT := int64(0), int64(math.MaxInt64)
	for range 20 {
		sent := workload.Mono()
		tm, err := rdb.Time(context.Background()).Result()
		recv := workload.Mono()
		if err != nil {
			e.t.Fatalf("TIME: %v", err)
		}
		if recv-sent < bestRTT {
			bestRTT, best = recv-sent, tm.UnixNano()-sent
		}
	}
	e.h.clockOffset = best
}

// observe samples every key's owner, token and PTTL on every master, each
// master in its own goroutine: a paused master costs its sampler a 100 ms
// timeout per key, and must not stall the sampling of the masters that
// still serve. (One sequential loop over five masters, three of them
// paused, looked at the live ones about once a second, missed the
// renewals they kept taking, and so put the latest known expiry of a lock
// up to a renew interval too early: CI reported a loss "60 ms after Redis
// could expire the key" that no master had expired.)
func (e *rlEnv) observe() {
	defer e.wg.Done()
	var wg sync.WaitGroup
	for _, s := range e.masters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.observeMaster(s.Addr())
		}()
	}
	wg.Wait()
}

// observeMaster samples every key on one master every 10 ms until the
// scenario ends.
func (e *rlEnv) observeMaster(addr string) {
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, ClientName: "chaos-observer", MaxRetries: -1, PoolSize: 1,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond,
	})
	defer rdb.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		for _, k := range e.keys {
			if s, err := sampleMutex(e.ctx, rdb, renewlock.DefaultKeyPrefix, k); err == nil {
				e.h.Sample(s)
			}
		}
	}
}

// stop ends the workload, closes the clients and collects the register's
// log.
func (e *rlEnv) stop() *History {
	e.cancel()
	e.wg.Wait()
	for _, c := range e.clients {
		if err := c.Close(); err != nil {
			e.h.Note(fmt.Sprintf("closing a redlock client: %v", err))
		}
	}
	e.h.mu.Lock()
	e.h.end = workload.Mono()
	e.h.mu.Unlock()
	log := make(map[string][]workload.LogEntry)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range e.keys {
		entries, err := e.reg.Log(ctx, k)
		if err != nil {
			e.t.Fatal(err)
		}
		log[k] = entries
	}
	e.h.mu.Lock()
	e.h.log = log
	e.h.mu.Unlock()
	return e.h
}

func TestRedlockChaos(t *testing.T) {
	ttl, dur := *flagTTL, duration(t)
	only := map[string]bool{}
	for _, n := range strings.Split(*flagOnly, ",") {
		if n != "" {
			only[n] = true
		}
	}
	resource := redistest.Start(t)
	resClient := resource.Client(func(o *redis.Options) { o.PoolSize = 32 })
	var rows []row
	for _, sc := range rlScenarios {
		if len(only) > 0 && !only[sc.name] {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			e := newRLEnv(t, sc, ttl, resClient)
			e.sleep(ttl / 2)
			cycles := 0
			for time.Since(start) < dur {
				sc.cycle(e, ttl)
				cycles++
			}
			h := e.stop()
			res := h.Check(Limits{TTL: ttl, OverlapAllowed: sc.overlapAllowed,
				TakeoverSlack: 250 * time.Millisecond, CheckTimeout: max(30*time.Second, dur)})
			r := row{sc: sc.scenario, clients: fmt.Sprintf("3 Clients × %d masters", sc.masters), cycles: cycles,
				res: res, warns: e.warns.Load(), duration: time.Since(start)}
			r.verdict = verdict(sc.scenario, res)
			rows = append(rows, r)
			t.Log(header())
			t.Log(r.String())
			for _, s := range res.Starved {
				t.Logf("late under CPU stall: %s", s)
			}
			for c, msgs := range res.Violations {
				for i, m := range msgs {
					if i == 10 {
						t.Errorf("(%s) … %d more", c, len(msgs)-10)
						break
					}
					t.Errorf("(%s) %s", c, m)
				}
			}
			if res.Acquisitions == 0 {
				t.Errorf("no acquisitions at all: the workload did not run")
			}
		})
	}
	if len(rows) > 0 {
		table := header() + "\n" + headerRule() + "\n"
		for _, r := range rows {
			table += r.String() + "\n"
		}
		fmt.Printf("\nredlock chaos summary (TTL %v, %v of faults per scenario):\n%s\n", ttl, dur, table)
	}
}
