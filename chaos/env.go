package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/chaos/internal/workload"
	"github.com/renewlock/renewlock/internal/redistest"
)

// LockClientPrefix starts the CLIENT SETNAME of every lock connection, so
// faults can find them with CLIENT LIST (and spare the observer's).
const LockClientPrefix = "chaos-lock-"

// InProcName is the process name of the in-process clients (c0, c1, …)
// in stall events.
const InProcName = "inproc"

// EnvConfig sizes one scenario's cluster of clients.
type EnvConfig struct {
	Name      string        // scenario name, used in key names
	TTL       time.Duration // lock TTL
	Keys      int           // contended keys
	InProc    int           // renewlock Clients in the test process, each behind its own proxy
	Loops     int           // holder loops per key in each in-process Client (≥ 2 exercises hand-offs inside a Client); default 1
	Procs     int           // worker processes, connected directly
	Hold      time.Duration // mean hold time of in-process clients
	Hold2     time.Duration // of their second and later loops per key, if set (else Hold)
	ProcHold  time.Duration // mean hold time of worker processes
	ProcWork  time.Duration // un-interruptible work before each write in worker processes
	WorkerBin string        // path of the built chaos/cmd/worker
	Resource  *redis.Client // the Redis holding the fenced register (never faulted)
	RedisArgs []string      // extra redis-server arguments
	// Kinds gives the kind of lock of each key, in order, as the worker's
	// -kinds flag spells it ("mutex", "sem:2", "rw", "elect"); nil: every key
	// is a mutex. WriteRatio is the fraction of a read-write lock's
	// acquisitions that write (in-process loops; ProcWriteRatio for worker
	// processes).
	Kinds          []string
	WriteRatio     float64
	ProcWriteRatio float64
}

// keyKind returns the kind and limit of the i-th key.
func (c *EnvConfig) keyKind(i int) (string, int) {
	if i >= len(c.Kinds) {
		return workload.KindMutex, 0
	}
	k, n, err := workload.ParseKind(c.Kinds[i])
	if err != nil {
		panic(err) // a scenario's own table
	}
	return k, n
}

// Env is one running scenario: a lock Redis, clients, proxies, worker
// processes, the observer and the history they all feed.
type Env struct {
	T     *testing.T          // the scenario's test
	Cfg   EnvConfig           // how it was sized
	Redis *redistest.Server   // the lock Redis, target of Redis faults
	Admin *redis.Client       // direct connection for injecting faults
	Keys  []string            // the contended lock keys
	kinds map[string]kindSpec // kind of each key
	H     *History            // everything recorded
	Reg   *workload.Register  // the fenced resource

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // in-process loops and the observer

	api     *toxiproxy.ApiServer
	Proxies []*toxiproxy.Proxy // one per in-process client, in order
	clients []*renewlock.Client
	Warns   atomic.Int64 // renewal warnings logged by in-process clients

	mu       sync.Mutex
	procs    map[string]*Proc
	procSeq  int
	workWait chan string               // process names that just emitted a "work" event
	holding  map[string]int            // client or process name → locks it holds
	heldKeys map[string]map[string]int // the same, per key
}

// Proc is one worker process.
type Proc struct {
	Name   string // "p0", "p1", …: prefix of its loops' worker names
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{}
	killed atomic.Bool
	err    error
}

// NewEnv starts a lock Redis and the scenario's clients; everything stops
// when Stop is called (or the test ends).
func NewEnv(t *testing.T, cfg EnvConfig) *Env {
	t.Helper()
	e := &Env{
		T: t, Cfg: cfg, H: NewHistory(),
		procs:    make(map[string]*Proc),
		holding:  make(map[string]int),
		heldKeys: make(map[string]map[string]int),
		workWait: make(chan string, 64),
	}
	e.Redis = redistest.Start(t, cfg.RedisArgs...)
	e.Admin = e.Redis.Client(func(o *redis.Options) { o.ClientName = "chaos-admin"; o.MaxRetries = -1 })
	e.kinds = make(map[string]kindSpec)
	for i := 0; i < cfg.Keys; i++ {
		k := fmt.Sprintf("chaos/%s/k%d", cfg.Name, i)
		e.Keys = append(e.Keys, k)
		kind, limit := cfg.keyKind(i)
		e.kinds[k] = kindSpec{Kind: kind, Limit: limit}
	}
	e.Reg = workload.NewRegister(cfg.Resource, "reg/"+cfg.Name+"/")
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.H.onEvent = func(ev workload.Event) {
		switch ev.Kind {
		case workload.KindAcquire, workload.KindRelease:
			d := 1
			if ev.Kind == workload.KindRelease {
				d = -1
			}
			w := workload.WorkerOf(ev.Worker)
			e.mu.Lock()
			e.holding[w] += d
			if e.heldKeys[w] == nil {
				e.heldKeys[w] = make(map[string]int)
			}
			e.heldKeys[w][ev.Key] += d
			e.mu.Unlock()
		}
		if ev.Kind == workload.KindWork {
			select {
			case e.workWait <- workload.WorkerOf(ev.Worker):
			default:
			}
		}
	}
	e.api = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())

	e.calibrate()
	e.wg.Add(2)
	go e.observe()
	go func() {
		defer e.wg.Done()
		workload.Probe(e.ctx, InProcName, e.H.Emit)
	}()
	for i := 0; i < cfg.InProc; i++ {
		e.startInProc(i)
	}
	for i := 0; i < cfg.Procs; i++ {
		e.SpawnProc()
	}
	return e
}

func (e *Env) workloadConfig(worker, key string) workload.Config {
	ks := e.kinds[key]
	return workload.Config{
		Worker: worker, Key: key, Hold: e.Cfg.Hold, WriteEvery: 20 * time.Millisecond,
		TryRatio: 0.5, AcquireTimeout: 3 * e.Cfg.TTL,
		Kind: ks.Kind, Limit: ks.Limit, WriteRatio: e.Cfg.WriteRatio,
	}
}

// KindOf returns the kind of lock key is.
func (e *Env) KindOf(key string) kindSpec { return e.kinds[key] }

func (e *Env) startInProc(i int) {
	name := fmt.Sprintf("c%d", i)
	p := toxiproxy.NewProxy(e.api, name, "127.0.0.1:0", e.Redis.Addr())
	if err := p.Start(); err != nil {
		e.T.Fatalf("starting proxy for %s: %v", name, err)
	}
	e.Proxies = append(e.Proxies, p)
	rdb := redis.NewClient(&redis.Options{Addr: p.Listen, ClientName: LockClientPrefix + name})
	rdb.AddHook(&LeaseHook{H: e.H, Prefix: renewlock.DefaultKeyPrefix, TTL: e.Cfg.TTL})
	logger := slog.New(&countingHandler{n: &e.Warns})
	c, err := renewlock.New(rdb, renewlock.WithTTL(e.Cfg.TTL), renewlock.WithLogger(logger), renewlock.WithHolder(name))
	if err != nil {
		e.T.Fatalf("renewlock.New: %v", err)
	}
	e.clients = append(e.clients, c)
	for _, k := range e.Keys {
		for j := 0; j < max(1, e.Cfg.Loops); j++ {
			holder := name + "/" + k
			if j > 0 {
				holder = fmt.Sprintf("%s#%d", holder, j)
			}
			cfg := e.workloadConfig(holder, k)
			if j > 0 && e.Cfg.Hold2 > 0 {
				cfg.Hold = e.Cfg.Hold2
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				workload.Run(e.ctx, c, e.Reg, cfg, e.H.Emit)
			}()
		}
	}
	e.T.Cleanup(func() { _ = rdb.Close() })
}

// SpawnProc starts one more worker process and returns it.
func (e *Env) SpawnProc() *Proc {
	e.mu.Lock()
	name := fmt.Sprintf("p%d", e.procSeq)
	e.procSeq++
	e.mu.Unlock()
	args := []string{
		"-redis", e.Redis.Addr(),
		"-resource", e.Cfg.Resource.Options().Addr,
		"-register-prefix", "reg/" + e.Cfg.Name + "/",
		"-name", name,
		"-keys", strings.Join(e.Keys, ","),
		"-ttl", e.Cfg.TTL.String(),
		"-hold", e.Cfg.ProcHold.String(),
		"-work", e.Cfg.ProcWork.String(),
		"-client-name", LockClientPrefix + name,
	}
	if len(e.Cfg.Kinds) > 0 {
		var ks []string
		for _, k := range e.Keys {
			ks = append(ks, workload.FormatKind(e.kinds[k].Kind, e.kinds[k].Limit))
		}
		args = append(args, "-kinds", strings.Join(ks, ","), "-write-ratio", strconv.FormatFloat(e.Cfg.ProcWriteRatio, 'f', -1, 64))
	}
	p := &Proc{Name: name, cmd: exec.Command(e.Cfg.WorkerBin, args...), exited: make(chan struct{})}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		e.T.Fatalf("worker stdout: %v", err)
	}
	if err := p.cmd.Start(); err != nil {
		e.T.Fatalf("starting worker %s: %v", name, err)
	}
	e.mu.Lock()
	e.procs[name] = p
	e.mu.Unlock()
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev workload.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				e.H.Note(fmt.Sprintf("worker %s printed %q: %v", name, sc.Text(), err))
				continue
			}
			e.H.Emit(ev)
		}
		p.err = p.cmd.Wait()
	}()
	return p
}

// Procs returns the running worker processes.
func (e *Env) Procs() []*Proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Proc
	for _, p := range e.procs {
		select {
		case <-p.exited:
		default:
			out = append(out, p)
		}
	}
	return out
}

// Proc returns the worker process called name.
func (e *Env) Proc(name string) *Proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.procs[name]
}

// Ctx is cancelled when the scenario stops.
func (e *Env) Ctx() context.Context { return e.ctx }

// Sleep waits d or until the scenario stops. Fault durations are wall-clock
// by nature; this is not used for synchronisation.
func (e *Env) Sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-e.ctx.Done():
	}
}

// Stop ends the workload (releasing every lock), collects the register log
// and returns the history, ready to Check.
func (e *Env) Stop() *History {
	t := e.T
	for _, p := range e.Procs() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT) // in case a fault left it stopped
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	e.cancel()
	e.wg.Wait()
	for _, c := range e.clients {
		if err := c.Close(); err != nil {
			e.H.Note(fmt.Sprintf("closing an in-process client: %v", err))
		}
	}
	for _, p := range e.allProcs() {
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			e.H.Note(fmt.Sprintf("worker %s did not stop within 15s of SIGTERM", p.Name))
		}
		if !p.killed.Load() {
			if p.err != nil {
				e.H.Note(fmt.Sprintf("worker %s: %v: %s", p.Name, p.err, lastLines(p.stderr.String(), 5)))
			} else if s := p.stderr.String(); strings.Contains(s, "panic") || strings.Contains(s, "DATA RACE") {
				e.H.Note(fmt.Sprintf("worker %s: %s", p.Name, lastLines(s, 5)))
			}
		}
	}
	for _, p := range e.Proxies {
		p.Stop()
	}
	e.H.mu.Lock()
	e.H.end = workload.Mono()
	e.H.mu.Unlock()
	log := make(map[string][]workload.LogEntry)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range e.resources() {
		entries, err := e.Reg.Log(ctx, k)
		if err != nil {
			t.Fatalf("%v", err)
		}
		log[k] = entries
	}
	e.H.mu.Lock()
	e.H.log = log
	e.H.mu.Unlock()
	return e.H
}

// resources returns every fenced resource written to: the keys, and
// semaphore permits' own resources.
func (e *Env) resources() []string {
	out := slices.Clone(e.Keys)
	e.H.mu.Lock()
	defer e.H.mu.Unlock()
	for _, ev := range e.H.events {
		if ev.Kind == workload.KindWriteStart && ev.Res != "" && !slices.Contains(out, ev.Res) {
			out = append(out, ev.Res)
		}
	}
	return out
}

func (e *Env) allProcs() []*Proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Proc, 0, len(e.procs))
	for _, p := range e.procs {
		out = append(out, p)
	}
	return out
}

// calibrate relates the Redis server clock to workload.Mono, so tokens
// (server microseconds at acquisition) bound the expiry instant in check (c).
// It keeps the reading with the shortest round trip and records the offset
// that makes mono(server instant) a lower bound.
func (e *Env) calibrate() {
	best, bestRTT := int64(0), int64(math.MaxInt64)
	for i := 0; i < 20; i++ {
		sent := workload.Mono()
		tm, err := e.Admin.Time(context.Background()).Result()
		recv := workload.Mono()
		if err != nil {
			e.T.Fatalf("TIME: %v", err)
		}
		if recv-sent < bestRTT {
			bestRTT, best = recv-sent, tm.UnixNano()-sent
		}
	}
	e.H.clockOffset = best
}

// observe polls every key's owner, token and PTTL over a direct connection,
// so check (c) knows when Redis would expire each lease.
func (e *Env) observe() {
	defer e.wg.Done()
	rdb := redis.NewClient(&redis.Options{
		Addr: e.Redis.Addr(), ClientName: "chaos-observer", MaxRetries: -1,
		ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond,
		PoolSize: 1,
	})
	defer rdb.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	prefix := renewlock.DefaultKeyPrefix
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		for _, k := range e.Keys {
			if e.kinds[k].shared() {
				e.observeShared(rdb, k)
				continue
			}
			if s, err := sampleMutex(e.ctx, rdb, prefix, k); err == nil {
				e.H.Sample(s)
			}
		}
	}
}

// The observer reads a lock with a read-only script: atomic like MULTI,
// and, unlike MULTI, allowed while Redis is out of memory (Redis 7 refuses
// every command queued in a MULTI then, reads too). An observer blind
// during the oom scenario missed the renewals Redis accepted meanwhile, put
// the last known expiry of a lease too early, and made check (c) report a
// loss 315 ms "after Redis could expire the key" that had not expired.
var (
	sampleMutexScript = redis.NewScript(`#!lua flags=no-writes
local v = redis.call('HMGET', KEYS[1], 'o', 't')
return {v[1], v[2], redis.call('PTTL', KEYS[1])}`)
	sampleSharedScript = redis.NewScript(`#!lua flags=no-writes
local t = redis.call('TIME')
return {t[1], t[2], redis.call('HGETALL', KEYS[1])}`)
)

// sampleMutex reads the owner, token and PTTL of the exclusive lock key
// (prefix+key) in one step.
func sampleMutex(ctx context.Context, rdb redis.Scripter, prefix, key string) (Sample, error) {
	sent := workload.Mono()
	v, err := sampleMutexScript.Run(ctx, rdb, []string{prefix + key}).Slice()
	if err != nil {
		return Sample{}, err
	}
	if len(v) != 3 {
		return Sample{}, fmt.Errorf("sample script returned %v", v)
	}
	ms, _ := v[2].(int64)
	s := Sample{Key: key, Sent: sent, PTTL: time.Duration(ms)} // -2, -1: no key, no TTL
	if ms > 0 {
		s.PTTL = time.Duration(ms) * time.Millisecond
	}
	if v[0] != nil && v[1] != nil {
		s.Owned = true
		s.Token, _ = strconv.ParseUint(fmt.Sprint(v[1]), 10, 64)
	}
	return s, nil
}

// observeShared samples a semaphore or read-write lock: every holder's
// token (field p<id>) and the end of its lease (field x<id>, server ms),
// read in one MULTI with the server's TIME, so the time left is the
// server's own count, as PTTL is for a mutex.
func (e *Env) observeShared(rdb *redis.Client, k string) {
	sent := workload.Mono()
	v, err := sampleSharedScript.Run(e.ctx, rdb, []string{renewlock.DefaultKeyPrefix + k}).Slice()
	if err != nil || len(v) != 3 {
		return
	}
	sec, _ := strconv.ParseInt(fmt.Sprint(v[0]), 10, 64)
	usec, _ := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
	nowUs := sec*1_000_000 + usec
	flat, _ := v[2].([]any)
	fields := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		fields[fmt.Sprint(flat[i])] = fmt.Sprint(flat[i+1])
	}
	s := Sample{Key: k, Sent: sent}
	for f, v := range fields {
		if !strings.HasPrefix(f, "p") {
			continue
		}
		id := f[1:]
		tok, err1 := strconv.ParseUint(strings.SplitN(v, " ", 2)[0], 10, 64)
		x, err2 := strconv.ParseInt(fields["x"+id], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		sh := ShareSample{Token: tok, Left: time.Duration(x*1000-nowUs) * time.Microsecond}
		if f := strings.SplitN(v, " ", 4); len(f) == 4 { // token mode taken-at holder
			sh.Holder = f[3]
		}
		s.Shares = append(s.Shares, sh)
	}
	e.H.Sample(s)
}

// countingHandler counts Warn records (renewal failures, losses) and drops
// them: the suite reads losses from Lock.Err, not from logs.
type countingHandler struct{ n *atomic.Int64 }

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *countingHandler) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
