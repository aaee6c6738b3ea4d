package main

// S8: leader election (issue 10). renewlock's Campaign against elections
// built the usual way on each peer lock: campaign = acquire, retried until
// it succeeds; leadership = holding the lock, renewed in the background
// (rueidislock renews by itself; redsync Extend and redislock Refresh every
// TTL/3); resign = release. Every library runs with the same TTL (-s8-ttl),
// every candidate has a client of its own (one process each, in a fleet).
//
// Measured per library:
//   - idle cost: Redis commands/s and Redis CPU while a leader holds and N
//     candidates wait (INFO commandstats and cpu over a window);
//   - hand-off: from the leader's resign call to another candidate leading;
//   - failover: the leader runs in a child process (this program with
//     "s8-child" as its first argument), which is SIGKILLed; from the kill
//     to another candidate leading, and how much of that came after the
//     killed leader's lease had ended in Redis (PTTL read just before the
//     kill): the detection delay.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"

	"github.com/renewlock/renewlock"
)

// An elector is one candidate's client of a library.
type elector interface {
	// campaign blocks until this candidate leads name or ctx ends.
	campaign(ctx context.Context, name string) (term, error)
	close()
}

// A term is one leadership.
type term interface {
	resign(ctx context.Context) error
}

// electLib is one library as an election.
type electLib struct {
	name string
	note string
	// defaultTTL is the library's own lease when none is set (0: none).
	defaultTTL time.Duration
	open       func(addr string, ttl time.Duration) (elector, error)
	// keys are the Redis keys of election name, whose PTTLs bound when a
	// dead leader's lease ends; need is how many of them must have ended
	// for another candidate to lead (a majority of rueidislock's keys).
	keys func(name string) []string
	need int
}

var electLibs = []electLib{
	{name: "renewlock", note: "Campaign/Resign: FIFO queue of candidates, pub/sub hand-off", defaultTTL: 10 * time.Second,
		open: openRenewlockElector, keys: func(n string) []string { return []string{renewlock.DefaultKeyPrefix + n} }, need: 1},
	{name: "rueidislock", note: "WithContext until leader, cancel to resign; defaults: 3 keys, majority 2, auto-extended", defaultTTL: 5 * time.Second,
		open: openRueidisElector(0), keys: rueidisKeys(3), need: 2},
	{name: "rueidislock-1key", note: "the same with KeyMajority 1", defaultTTL: 5 * time.Second,
		open: openRueidisElector(1), keys: rueidisKeys(1), need: 1},
	{name: "redsync", note: "LockContext retried until leader (defaults: 32 tries, 50–250 ms apart), Extend every TTL/3, Unlock to resign", defaultTTL: 8 * time.Second,
		open: openRedsyncElector(false), keys: func(n string) []string { return []string{"redsync:" + n} }, need: 1},
	{name: "redsync-1-5ms", note: "redsync, 1–5 ms retry delay, unlimited tries", defaultTTL: 8 * time.Second,
		open: openRedsyncElector(true), keys: func(n string) []string { return []string{"redsync:" + n} }, need: 1},
	{name: "redislock-10ms", note: "Obtain with LinearBackoff(10 ms) retried until leader, Refresh every TTL/3, Release to resign",
		open: openRedislockElector(10 * time.Millisecond), keys: func(n string) []string { return []string{"redislock:" + n} }, need: 1},
}

func rueidisKeys(n int) func(string) []string {
	return func(name string) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("rueidislock:%d:%s", i, name))
		}
		return out
	}
}

// --- renewlock

type renewlockElector struct {
	rdb *redis.Client
	c   *renewlock.Client
}

type renewlockTerm struct{ l *renewlock.Leadership }

func openRenewlockElector(addr string, ttl time.Duration) (elector, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c, err := renewlock.New(rdb, renewlock.WithTTL(ttl), renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &renewlockElector{rdb, c}, nil
}

func (e *renewlockElector) campaign(ctx context.Context, name string) (term, error) {
	l, err := e.c.Campaign(ctx, name, "candidate")
	if err != nil {
		return nil, err
	}
	return renewlockTerm{l}, nil
}

func (t renewlockTerm) resign(ctx context.Context) error { return t.l.Resign(ctx) }

func (e *renewlockElector) close() {
	_ = e.c.Close()
	_ = e.rdb.Close()
}

// --- rueidislock

type rueidisElector struct{ l rueidislock.Locker }

type rueidisTerm struct{ cancel context.CancelFunc }

func openRueidisElector(majority int32) func(string, time.Duration) (elector, error) {
	return func(addr string, ttl time.Duration) (elector, error) {
		l, err := rueidislock.NewLocker(rueidislock.LockerOption{
			KeyMajority:  majority,
			KeyValidity:  ttl,
			ClientOption: rueidis.ClientOption{InitAddress: []string{addr}},
		})
		if err != nil {
			return nil, err
		}
		return &rueidisElector{l}, nil
	}
}

func (e *rueidisElector) campaign(ctx context.Context, name string) (term, error) {
	// The lock lives as long as the context it was taken with: a context
	// of its own, so that ending the campaign's ctx later does not resign.
	lctx, lcancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, lcancel) // campaigning ends with ctx
	_, cancel, err := e.l.WithContext(lctx, name)
	if !stop() || err != nil {
		lcancel()
		if err == nil {
			cancel()
			err = ctx.Err()
		}
		return nil, err
	}
	return rueidisTerm{func() { cancel(); lcancel() }}, nil
}

func (t rueidisTerm) resign(context.Context) error {
	t.cancel() // waits until the keys are deleted
	return nil
}

func (e *rueidisElector) close() { e.l.Close() }

// --- redsync

type redsyncElector struct {
	rdb   *redis.Client
	rs    *redsync.Redsync
	ttl   time.Duration
	tuned bool
}

type renewedTerm struct {
	stop    chan struct{}
	done    chan struct{}
	release func(context.Context) error
}

// renewEvery calls renew every interval until the term is resigned.
func renewEvery(interval time.Duration, renew func() error, release func(context.Context) error) *renewedTerm {
	t := &renewedTerm{stop: make(chan struct{}), done: make(chan struct{}), release: release}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				_ = renew() // a lost lease shows as a failed release; not measured here
			}
		}
	}()
	return t
}

func (t *renewedTerm) resign(ctx context.Context) error {
	close(t.stop)
	<-t.done
	return t.release(ctx)
}

func openRedsyncElector(tuned bool) func(string, time.Duration) (elector, error) {
	return func(addr string, ttl time.Duration) (elector, error) {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		return &redsyncElector{rdb, redsync.New(goredis.NewPool(rdb)), ttl, tuned}, nil
	}
}

func (e *redsyncElector) campaign(ctx context.Context, name string) (term, error) {
	opts := []redsync.Option{redsync.WithExpiry(e.ttl)}
	if e.tuned {
		opts = append(opts, redsync.WithTries(1<<30), redsync.WithRetryDelayFunc(func(int) time.Duration {
			return time.Millisecond + mrand.N(4*time.Millisecond)
		}))
	}
	m := e.rs.NewMutex("redsync:"+name, opts...)
	if _, err := retryUntil(ctx, func() (held, error) { return nil, m.LockContext(ctx) }); err != nil {
		return nil, err
	}
	return renewEvery(e.ttl/3, func() error { _, err := m.ExtendContext(context.Background()); return err },
		func(ctx context.Context) error {
			ok, err := m.UnlockContext(ctx)
			if err == nil && !ok {
				err = errors.New("redsync: unlock failed")
			}
			return err
		}), nil
}

func (e *redsyncElector) close() { _ = e.rdb.Close() }

// --- bsm/redislock

type redislockElector struct {
	rdb     *redis.Client
	c       *redislock.Client
	ttl     time.Duration
	backoff time.Duration
}

func openRedislockElector(backoff time.Duration) func(string, time.Duration) (elector, error) {
	return func(addr string, ttl time.Duration) (elector, error) {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		return &redislockElector{rdb, redislock.New(rdb), ttl, backoff}, nil
	}
}

func (e *redislockElector) campaign(ctx context.Context, name string) (term, error) {
	opt := &redislock.Options{RetryStrategy: redislock.LinearBackoff(e.backoff)}
	var l *redislock.Lock
	_, err := retryUntil(ctx, func() (held, error) {
		var err error
		l, err = e.c.Obtain(ctx, "redislock:"+name, e.ttl, opt)
		return nil, err
	})
	if err != nil {
		return nil, err
	}
	return renewEvery(e.ttl/3, func() error { return l.Refresh(context.Background(), e.ttl, nil) }, l.Release), nil
}

func (e *redislockElector) close() { _ = e.rdb.Close() }

// --- the scenario

// s8Res is S8 for one library.
type s8Res struct {
	Note       string  `json:"note"`
	DefaultTTL string  `json:"default_ttl"`
	Idle       []*idle `json:"idle"` // per N, in S8Clients order
	// Handoff: resign call → another candidate leads (N = the largest).
	Handoff dist `json:"handoff"`
	// Failover: SIGKILL of the leader's process → another candidate leads;
	// Detection: the part of it after the leader's lease ended in Redis.
	Failover       dist `json:"failover"`
	Detection      dist `json:"failover_after_lease_end"`
	LeaseLeftAtKil dist `json:"lease_left_at_kill"`
	Errors         int  `json:"errors"`
	handoffs       []time.Duration
	failovers      []time.Duration
	detections     []time.Duration
	leaseLeft      []time.Duration
	idleBy         map[int]*idle
}

// idle is the Redis load while a leader holds and Candidates wait.
type idle struct {
	Candidates    int                `json:"candidates"`
	Seconds       float64            `json:"seconds"`
	CmdsPerSec    float64            `json:"redis_commands_per_sec"`
	ByCommand     map[string]float64 `json:"redis_commands_per_sec_by_command"`
	RedisCPUPct   float64            `json:"redis_cpu_percent"`
	PerCandidate  float64            `json:"redis_commands_per_sec_per_candidate_above_leader_alone"`
	cmds          map[string]int64
	cpu           float64
	leaderChanged int
}

type s8Out struct {
	TTL     string              `json:"ttl"`
	Window  string              `json:"idle_window_per_round"`
	Clients []int               `json:"candidates"`
	Results map[string]*s8Res   `json:"results"`
	Order   []string            `json:"libraries"`
	Note    string              `json:"note"`
	byName  map[string]*s8Res   `json:"-"`
	libs    map[string]electLib `json:"-"`
}

// runS8 runs S8 for every election library whose name is selected (the
// bench's -libs, if given, by library name; renewlock always).
func (b *bench) runS8() (*s8Out, error) {
	cfg := b.cfg
	var ns []int // 0 allowed: the leader alone, the baseline
	for _, f := range strings.Split(cfg.S8Clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-s8-clients: bad number %q", f)
		}
		ns = append(ns, n)
	}
	out := &s8Out{TTL: cfg.S8TTL.String(), Window: cfg.S8.String(), Clients: ns, Results: map[string]*s8Res{},
		byName: map[string]*s8Res{}, libs: map[string]electLib{},
		Note: "every candidate and the leader with a client of its own; same TTL for every library"}
	var libs []electLib
	for _, l := range electLibs {
		if l.name != "renewlock" && cfg.Libs != "" && !slices.Contains(strings.Split(cfg.Libs, ","), l.name) {
			continue
		}
		libs = append(libs, l)
		r := &s8Res{Note: l.note, DefaultTTL: "none", idleBy: map[int]*idle{}}
		if l.defaultTTL > 0 {
			r.DefaultTTL = l.defaultTTL.String()
		}
		for _, n := range ns {
			r.idleBy[n] = &idle{Candidates: n, cmds: map[string]int64{}}
			r.Idle = append(r.Idle, r.idleBy[n])
		}
		out.Results[l.name], out.byName[l.name] = r, r
		out.Order = append(out.Order, l.name)
		out.libs[l.name] = l
	}
	for round := 0; round < cfg.Rounds; round++ {
		k := round % len(libs)
		for _, l := range append(slices.Clone(libs[k:]), libs[:k]...) {
			r := out.byName[l.name]
			for _, n := range ns {
				logf("S8 round %d %s: idle and hand-offs with %d candidates", round+1, l.name, n)
				if err := b.electIdle(l, fmt.Sprintf("s8:%d:%d", round, n), n, n == ns[len(ns)-1], r); err != nil {
					if l.name == "renewlock" {
						return nil, fmt.Errorf("S8 %s N=%d: %w", l.name, n, err)
					}
					// A peer's failure is its result, not the end of the run.
					r.Errors++
					logf("S8 %s N=%d: %v (counted as an error)", l.name, n, err)
				}
			}
			logf("S8 round %d %s: failover", round+1, l.name)
			if err := b.electFailover(l, fmt.Sprintf("s8f:%d", round), r); err != nil {
				if l.name == "renewlock" {
					return nil, fmt.Errorf("S8 %s failover: %w", l.name, err)
				}
				r.Errors++
				logf("S8 %s failover: %v (counted as an error)", l.name, err)
			}
		}
	}
	for _, r := range out.byName {
		r.Handoff = summarize(r.handoffs)
		r.Failover = summarize(r.failovers)
		r.Detection = summarize(r.detections)
		r.LeaseLeftAtKil = summarize(r.leaseLeft)
		for _, id := range r.Idle {
			if id.Seconds > 0 {
				var all int64
				id.ByCommand = map[string]float64{}
				for c, v := range id.cmds {
					id.ByCommand[c] = float64(v) / id.Seconds
					all += v
				}
				id.CmdsPerSec = float64(all) / id.Seconds
				id.RedisCPUPct = id.cpu / id.Seconds * 100
			}
		}
		// Per candidate: above the leader alone (N=0), if measured.
		var base *idle
		for _, id := range r.Idle {
			if id.Candidates == 0 {
				base = id
			}
		}
		for _, id := range r.Idle {
			if id.Candidates > 0 {
				extra := id.CmdsPerSec
				if base != nil {
					extra -= base.CmdsPerSec
				}
				id.PerCandidate = extra / float64(id.Candidates)
			}
		}
	}
	return out, nil
}

func (b *bench) electIdle(l electLib, name string, n int, handoffs bool, r *s8Res) error {
	ttl := b.cfg.S8TTL
	leader, err := l.open(b.addr, ttl)
	if err != nil {
		return err
	}
	defer leader.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lt, err := campaignTimeout(leader, name, opTimeout)
	if err != nil {
		return fmt.Errorf("first leader: %w", err)
	}
	// n candidates, each its own client; elected terms come back here.
	elected := make(chan term, n)
	var wg sync.WaitGroup
	els := make([]elector, n)
	defer func() {
		cancel()
		wg.Wait()
		var cwg sync.WaitGroup
		for _, e := range els {
			if e != nil {
				cwg.Add(1)
				go func() { defer cwg.Done(); e.close() }()
			}
		}
		cwg.Wait()
	}()
	for i := range els {
		if els[i], err = l.open(b.addr, ttl); err != nil {
			return err
		}
		wg.Add(1)
		go func(e elector) {
			defer wg.Done()
			for ctx.Err() == nil {
				t, err := e.campaign(ctx, name)
				if err != nil {
					continue // ctx ended (or a transient error: campaign again)
				}
				select {
				case elected <- t:
				case <-ctx.Done():
					_ = t.resign(context.Background())
					return
				}
				return // one term per candidate: the main goroutine resigns it
			}
		}(els[i])
	}
	// Let every candidate reach its waiting state (first attempt, queue,
	// subscription, retry loop), then measure the idle window.
	time.Sleep(min(ttl/2, time.Second))
	bg := context.Background()
	s0, err := snapshot(bg, b.admin)
	if err != nil {
		return err
	}
	t0 := time.Now()
	time.Sleep(b.cfg.S8)
	el := time.Since(t0)
	s1, err := snapshot(bg, b.admin)
	if err != nil {
		return err
	}
	id := r.idleBy[n]
	id.Seconds += el.Seconds()
	for c, v := range cmdDelta(s0, s1) {
		id.cmds[c] += v
	}
	id.cpu += s1.cpu - s0.cpu
	select {
	case <-elected:
		id.leaderChanged++ // a candidate led while the leader held: must not happen
		r.Errors++
	default:
	}

	// Hand-offs: the leader resigns after a random 10–30 ms; the time from
	// the resign call to the next leader's campaign returning is a sample.
	// Each new leader resigns in turn (it has left the candidates).
	cur := lt
	turns := min(n, 1)
	if handoffs {
		turns = min(n, b.cfg.S8Handoffs)
	}
	for i := 0; i < turns; i++ {
		time.Sleep(10*time.Millisecond + mrand.N(20*time.Millisecond))
		t0 := time.Now()
		rctx, rcancel := context.WithTimeout(bg, opTimeout)
		err := cur.resign(rctx)
		rcancel()
		if err != nil {
			r.Errors++
		}
		select {
		case next := <-elected:
			if handoffs {
				r.handoffs = append(r.handoffs, time.Since(t0))
			}
			cur = next
		case <-time.After(2*ttl + opTimeout):
			return errors.New("no new leader after a resignation")
		}
	}
	rctx, rcancel := context.WithTimeout(bg, opTimeout)
	defer rcancel()
	return cur.resign(rctx) // the last leader (the first, if nobody waited)
}

func campaignTimeout(e elector, name string, d time.Duration) (term, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return e.campaign(ctx, name)
}

// electFailover: a child process leads, candidates wait, the child is
// SIGKILLed; the time until a candidate leads is one sample.
func (b *bench) electFailover(l electLib, name string, r *s8Res) error {
	const n = 4
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ttl := b.cfg.S8TTL
	cmd := exec.Command(exe, "s8-child", l.name, b.addr, name, ttl.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "LEADER" {
		return fmt.Errorf("child did not lead: %q %v", line, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan time.Time, n)
	var terms []term
	var mu sync.Mutex
	var wg sync.WaitGroup
	els := make([]elector, n)
	defer func() {
		cancel()
		wg.Wait()
		for _, t := range terms {
			rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
			_ = t.resign(rctx)
			rcancel()
		}
		for _, e := range els {
			if e != nil {
				e.close()
			}
		}
	}()
	for i := range els {
		if els[i], err = l.open(b.addr, ttl); err != nil {
			return err
		}
		wg.Add(1)
		go func(e elector) {
			defer wg.Done()
			for ctx.Err() == nil {
				t, err := e.campaign(ctx, name)
				if err != nil {
					continue
				}
				got <- time.Now()
				mu.Lock()
				terms = append(terms, t)
				mu.Unlock()
				return
			}
		}(els[i])
	}
	// Kill at a random phase of the leader's renewals.
	time.Sleep(min(ttl/2, time.Second) + mrand.N(ttl/3))
	left, err := b.leaseLeft(l, name)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		return err
	}
	select {
	case at := <-got:
		d := at.Sub(t0)
		r.failovers = append(r.failovers, d)
		r.leaseLeft = append(r.leaseLeft, left)
		r.detections = append(r.detections, d-left)
	case <-time.After(3*ttl + opTimeout):
		r.Errors++
		return errors.New("no candidate led after the leader was killed")
	}
	return nil
}

// leaseLeft returns how long until the dead leader's lease ends in Redis:
// the need-th smallest PTTL of its keys.
func (b *bench) leaseLeft(l electLib, name string) (time.Duration, error) {
	var left []time.Duration
	for _, k := range l.keys(name) {
		d, err := b.admin.PTTL(context.Background(), k).Result()
		if err != nil {
			return 0, err
		}
		left = append(left, max(d, 0))
	}
	sort.Slice(left, func(i, j int) bool { return left[i] < left[j] })
	if len(left) < l.need {
		return 0, fmt.Errorf("%s: %d keys, need %d", l.name, len(left), l.need)
	}
	return left[l.need-1], nil
}

// electChild is the child process of a failover sample: it leads name with
// library lib and then waits to be killed. Arguments: lib addr name ttl.
func electChild(args []string) {
	if len(args) != 4 {
		fatal(fmt.Errorf("s8-child: want lib addr name ttl, got %q", args))
	}
	ttl, err := time.ParseDuration(args[3])
	if err != nil {
		fatal(err)
	}
	i := slices.IndexFunc(electLibs, func(l electLib) bool { return l.name == args[0] })
	if i < 0 {
		fatal(fmt.Errorf("s8-child: unknown library %q", args[0]))
	}
	e, err := electLibs[i].open(args[1], ttl)
	if err != nil {
		fatal(err)
	}
	if _, err := campaignTimeout(e, args[2], 30*time.Second); err != nil {
		fatal(err)
	}
	fmt.Println("LEADER")
	select {} // lead, renewing, until killed
}

func writeS8(p func(string, ...any), s *s8Out, rounds int) {
	p("### S8 leader election: idle cost, hand-off, failover (TTL %s for every library)\n\n", s.TTL)
	p("Each library's election built the usual way on its lock (campaign = acquire retried, leadership renewed, resign = release); renewlock's own Campaign. "+
		"Idle: Redis commands/s (every command Redis ran, scripts' inner commands included) while a leader holds and N candidates wait, %s window per N per round, %d rounds. "+
		"Failover: the leader's process SIGKILLed, N=4 candidates waiting; *after lease end* = failover − the leader's remaining lease in Redis at the kill (PTTL).\n\n", s.Window, rounds)
	p("| library | default TTL |")
	for _, n := range s.Clients {
		if n == 0 {
			p(" idle cmds/s, leader alone |")
			continue
		}
		p(" idle cmds/s N=%d (per candidate) |", n)
	}
	p(" Redis CPU %% N=%d | hand-off p50 / p99 ms | failover p50 / max ms | after lease end p50 / max ms | errors |\n|---|---|", s.Clients[len(s.Clients)-1])
	for range s.Clients {
		p("---:|")
	}
	p("---:|---:|---:|---:|---:|\n")
	for _, name := range s.Order {
		r := s.byName[name]
		p("| %s | %s |", name, r.DefaultTTL)
		for _, id := range r.Idle {
			if id.Candidates == 0 {
				p(" %.1f |", id.CmdsPerSec)
				continue
			}
			p(" %.1f (%.2f) |", id.CmdsPerSec, id.PerCandidate)
		}
		last := r.Idle[len(r.Idle)-1]
		p(" %.2f | %.2f / %.2f | %.0f / %.0f | %.0f / %.0f | %d |\n", last.RedisCPUPct, r.Handoff.P50, r.Handoff.P99,
			r.Failover.P50, r.Failover.Max, r.Detection.P50, r.Detection.Max, r.Errors)
	}
	p("\n")
	rl := s.byName["renewlock"]
	if rl == nil {
		return
	}
	p("renewlock against the peers (ratio = peer ÷ renewlock: > 1 favours renewlock)\n\n| peer | idle cmds/s N=%d | hand-off p50 | failover p50 | after lease end p50 |\n|---|---:|---:|---:|---:|\n", s.Clients[len(s.Clients)-1])
	for _, name := range s.Order {
		if name == "renewlock" {
			continue
		}
		r := s.byName[name]
		a, c := r.Idle[len(r.Idle)-1], rl.Idle[len(rl.Idle)-1]
		p("| %s | %s | %s | %s | %s |\n", name, fratio(a.CmdsPerSec, c.CmdsPerSec), fratio(r.Handoff.P50, rl.Handoff.P50),
			fratio(r.Failover.P50, rl.Failover.P50), fratio(r.Detection.P50, rl.Detection.P50))
	}
	p("\n")
}

// fratio formats a ÷ b.
func fratio(a, b float64) string {
	if b <= 0 {
		return "–"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}
