package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// TestStress is a randomized API-interruption stress mode. Over several
// rounds it mixes, on 3 keys (one of them hot: half of all calls), Acquire
// with random deadlines (already cancelled, 0–5 ms, or long: TTL/2–2×TTL, cut
// short when the round stops), TryAcquire, and Do (whose function returns an
// error or panics now and then). Held locks are kept 0–3 ms, one in three
// 4–20 ms so that renewals are on the wire when releases run, then released
// with a context that is already cancelled, ends after 0–2 ms, or never
// ends; a Release that failed is mostly retried at once (always on the hot
// key), else its lease is left to expire. Each round runs 2–4 Clients, each
// on its own go-redis client (half of them with ContextTimeoutEnabled), with
// 8–16 goroutines per Client, so that same-client hand-offs and cross-client
// waiting both happen. Clients are closed at random moments while their
// goroutines are busy and replaced by new ones. TTLs are random in
// 300 ms–2 s (mostly ≤ 500 ms) and renew intervals in 10 ms–TTL/3 (mostly
// 10 ms, the minimum), per Client and per call. Every third round (2, 5, 8,
// …) pauses Redis (SIGSTOP) for longer than every TTL in use (TTLs ≤ 800 ms
// there), while some lock is held, and mostly closes a Client during the
// pause (preferably one that holds a lock).
//
// It checks, with the seed, round and key in every message:
//
//  1. exclusion: when a goroutine obtains a lock, no other holder of the
//     key has Done open, unless that holder is inside Release (or Do's
//     release) or its Client is closing;
//  2. once every goroutine of the round returned (before the Clients are
//     closed), every key becomes free in Redis within the longest TTL +
//     500 ms: a key still owned is an orphaned lease (the message names the
//     call whose holder id is on it, via WithHolder);
//  3. in a round with a pause starting at P, every lock with Done open at P
//     (or taken in Redis before P and returned later) has Done closed by
//     P + TTL·(1−drift) − margin + 150 ms (stressDeadlineSlack), also when
//     Close is called during the pause;
//  4. no Lock.Err, Release or Do error wraps ErrLeaseLost in a round
//     without a pause, nor, in a pause round, for a lock lost before the
//     pause or taken by a call made after Redis resumed;
//  5. errors are classified: an Acquire (or Do) whose ctx ended wraps
//     ctx.Err() and never ErrNotAcquired; TryAcquire on a held key wraps
//     ErrNotAcquired; a call on a Client whose Close returned wraps
//     ErrClientClosed; no other error while Redis runs;
//  6. once all Clients of a round are closed, no goroutine of the round is
//     left (goleak);
//  7. nothing panics (except the test's own panics inside Do);
//  8. Do returns (or re-panics) with its lock's Done closed, Release returns
//     with Done closed, and Close returns with Done closed on every lock of
//     its Client;
//  9. every call returns within 6 s after the round stops (else the stacks
//     of the stuck goroutines are reported, and the run goes on).
//
// A goroutine that wakes every 1 ms records every gap > 50 ms: when the
// process was starved that long around a timing violation (1, 3, 4), it is
// reported as excused instead of failing the test, and the round is listed
// as starved in the summary.
//
// By default it runs about 20 s of rounds (8 s with -short); longer runs:
//
//	RENEWLOCK_STRESS=10m go test -race -count=1 -run '^TestStress$' -v -timeout 0 .
//	make stress RENEWLOCK_STRESS=10m
//
// The seed is logged at the start; RENEWLOCK_STRESS_SEED=N replays its
// choices (the scheduling differs from run to run). The summary at the end
// (rounds, clients, acquisitions, timeouts, releases, pauses, violations per
// invariant) is what RELIABILITY.md reports.
func TestStress(t *testing.T) {
	total := 20 * time.Second
	if v := os.Getenv("RENEWLOCK_STRESS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("RENEWLOCK_STRESS=%q: want a positive duration such as 10m", v)
		}
		total = d
	} else if testing.Short() {
		total = 8 * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("RENEWLOCK_STRESS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RENEWLOCK_STRESS_SEED=%q: want an unsigned integer", v)
		}
		seed = s
	}
	t.Logf("stress: seed %d (RENEWLOCK_STRESS_SEED=%d replays its choices), duration %v", seed, seed, total)

	srv := redistest.Start(t)
	probe := startGapProbe()
	defer probe.close()

	s := &stress{t: t, seed: seed, srv: srv, probe: probe, start: time.Now(),
		viol: map[string]int{}, excused: map[string]int{}, first: map[string]time.Duration{}, rounds: map[string][]int{}}
	for n := 1; time.Since(s.start) < total; n++ {
		r := newStressRound(s, n)
		r.run()
	}
	s.summary()
}

const (
	stressKeys = 3
	// stressDeadlineSlack is how late Done may close after the validity
	// deadline (invariant 3): timer, scheduler and -race lateness on a loaded
	// 2-core machine.
	stressDeadlineSlack = 150 * time.Millisecond
	// stressFreeSlack is how long after the longest TTL a key may stay owned
	// once every holder returned (invariant 2).
	stressFreeSlack = 500 * time.Millisecond
	// stressGap is the scheduling gap of the test process beyond which a
	// timing violation is excused (starved process).
	stressGap = 50 * time.Millisecond
	// stressHang bounds how long the round's goroutines may take to return
	// once it stops: calls are bounded by their contexts (≤ 4 s), go-redis
	// timeouts (3 s) and Close's release (5 s).
	stressHang = 6 * time.Second
	// stressMaxShown is how many messages per invariant fail the test with
	// their text; the rest are counted.
	stressMaxShown = 5
)

// Invariant names, as counted in the summary.
const (
	invExclusion = "1 exclusion"
	invKeyFree   = "2 key free after all holders"
	invDeadline  = "3 Done by the validity deadline"
	invLoss      = "4 no loss without a cause"
	invErrors    = "5 error classification"
	invLeak      = "6 no goroutine left"
	invPanic     = "7 nothing panics"
	invDoneOpen  = "8 Done closed when Do/Close return"
	invHang      = "9 calls return"
)

var stressInvariants = []string{invExclusion, invKeyFree, invDeadline, invLoss, invErrors, invLeak, invPanic, invDoneOpen, invHang}

// stress is one TestStress run.
type stress struct {
	t     *testing.T
	seed  uint64
	srv   *redistest.Server
	probe *gapProbe
	start time.Time

	c stressCounters

	mu      sync.Mutex
	viol    map[string]int
	excused map[string]int
	starved []string                 // rounds with a gap > stressGap
	first   map[string]time.Duration // first violation of each invariant, from the start
	rounds  map[string][]int         // rounds with a violation of each invariant
}

type stressCounters struct {
	rounds, pauseRounds                               atomic.Int64
	clientsCreated, clientsClosedMid, closesInPause   atomic.Int64
	acqAcquire, acqTry, acqDo                         atomic.Int64
	acqTimeouts, acqCancelledBefore, acqClosedClient  atomic.Int64
	tryHeld, tryOtherErr, tryCancelledBefore          atomic.Int64
	doFnErr, doPanics                                 atomic.Int64
	relCancelled, relShort, relBackground, relFailed  atomic.Int64
	relLost, callsOnClosed, closeErrors, acqOtherErrs atomic.Int64
	relRetried, relRetryFailed                        atomic.Int64
}

// violate records a violation of inv. Unless excused (the process was
// starved for excuse ≥ stressGap around it), it fails the test.
func (s *stress) violate(r *stressRound, inv, key string, excuse time.Duration, format string, args ...any) {
	msg := fmt.Sprintf("stress seed=%d round=%d key=%q at +%.1fs: [%s] %s", s.seed, r.n, key,
		time.Since(s.start).Seconds(), inv, fmt.Sprintf(format, args...))
	s.mu.Lock()
	defer s.mu.Unlock()
	if excuse >= stressGap {
		s.excused[inv]++
		if s.excused[inv] <= stressMaxShown {
			s.t.Logf("EXCUSED (process starved %v): %s", excuse.Round(time.Millisecond), msg)
		}
		return
	}
	s.viol[inv]++
	if s.viol[inv] == 1 {
		s.first[inv] = time.Since(s.start)
	}
	if rs := s.rounds[inv]; len(rs) == 0 || rs[len(rs)-1] != r.n {
		s.rounds[inv] = append(rs, r.n)
	}
	if s.viol[inv] <= stressMaxShown {
		s.t.Errorf("VIOLATION: %s", msg)
	}
}

func (s *stress) summary() {
	c := &s.c
	var b strings.Builder
	fmt.Fprintf(&b, "stress summary (seed %d, %v):\n", s.seed, time.Since(s.start).Round(time.Millisecond))
	fmt.Fprintf(&b, "  rounds %d (with a Redis pause %d), starved rounds %d %v\n",
		c.rounds.Load(), c.pauseRounds.Load(), len(s.starved), s.starved)
	fmt.Fprintf(&b, "  clients created %d, closed mid-round %d (during a pause %d), Close errors %d\n",
		c.clientsCreated.Load(), c.clientsClosedMid.Load(), c.closesInPause.Load(), c.closeErrors.Load())
	fmt.Fprintf(&b, "  acquisitions: Acquire %d, TryAcquire %d, Do %d\n", c.acqAcquire.Load(), c.acqTry.Load(), c.acqDo.Load())
	fmt.Fprintf(&b, "  Acquire/Do timeouts (ctx ended) %d, of them ctx ended before the call %d; other Acquire errors %d; on closing client %d\n",
		c.acqTimeouts.Load(), c.acqCancelledBefore.Load(), c.acqOtherErrs.Load(), c.acqClosedClient.Load())
	fmt.Fprintf(&b, "  TryAcquire held %d, ctx ended before the call %d, other errors %d; Do fn errors %d, panics %d; calls on closed clients %d\n",
		c.tryHeld.Load(), c.tryCancelledBefore.Load(), c.tryOtherErr.Load(), c.doFnErr.Load(), c.doPanics.Load(), c.callsOnClosed.Load())
	fmt.Fprintf(&b, "  releases: ctx cancelled %d, ctx 0–2 ms %d, background %d; failed (not lost) %d, retried at once %d (failed again %d), reported lost %d\n",
		c.relCancelled.Load(), c.relShort.Load(), c.relBackground.Load(), c.relFailed.Load(),
		c.relRetried.Load(), c.relRetryFailed.Load(), c.relLost.Load())
	s.mu.Lock()
	for _, inv := range stressInvariants {
		fmt.Fprintf(&b, "  violations %-34s %d (excused %d)", inv, s.viol[inv], s.excused[inv])
		if s.viol[inv] > 0 {
			fmt.Fprintf(&b, ", first at +%.1fs, in rounds %v", s.first[inv].Seconds(), s.rounds[inv])
		}
		b.WriteString("\n")
	}
	s.mu.Unlock()
	s.t.Log(b.String())
}

// stressRound is one round: fresh keys, fresh Clients.
type stressRound struct {
	s     *stress
	n     int
	rng   *rand.Rand // the round's planner (one goroutine)
	keys  []string
	pause bool
	ttlHi time.Duration // TTLs are drawn from [300 ms, ttlHi]
	work  time.Duration // how long goroutines start new operations

	stopping atomic.Bool
	stopCh   chan struct{}
	ctx      context.Context // cancelled when the round stops
	cancel   context.CancelFunc
	finalCh  chan struct{} // watchers exit
	workers  sync.WaitGroup
	aux      sync.WaitGroup // closers, replacements, pauser
	watchers sync.WaitGroup
	streams  atomic.Uint64
	callSeq  atomic.Int64
	maxTTL   atomic.Int64

	mu       sync.Mutex
	clients  []*stressClient // every Client of the round, also the closed ones
	holds    []*holding
	reg      map[string]map[*holding]struct{} // holders per key whose Done is open
	calls    map[int64]string                 // what each call was and returned, by id
	pausedAt time.Time                        // zero: no pause yet
	resumed  time.Time
	atPause  []*holding // holders with Done open at the pause
}

type stressClient struct {
	id      int
	c       *renewlock.Client
	rdb     *redis.Client
	ctxTO   bool
	ttl     time.Duration // the Client's default TTL
	closing atomic.Bool   // Close called
	closeAt atomic.Int64  // when Close began: offset from the run's start
	closed  atomic.Bool   // Close returned
}

type holding struct {
	key       string
	cl        *stressClient
	l         *renewlock.Lock
	via       string
	ttl       time.Duration
	called    time.Time // when the call that obtained it began
	obtained  time.Time
	releasing atomic.Bool  // inside Release / Do's release
	doneAt    atomic.Int64 // when Done closed: offset from the run's start, 0 before
	lossSeen  atomic.Bool  // a loss was reported for it already
}

func newStressRound(s *stress, n int) *stressRound {
	r := &stressRound{s: s, n: n, rng: rand.New(rand.NewPCG(s.seed, uint64(n)<<32)),
		stopCh: make(chan struct{}), finalCh: make(chan struct{}), reg: map[string]map[*holding]struct{}{},
		calls: map[int64]string{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for i := range stressKeys {
		r.keys = append(r.keys, fmt.Sprintf("stress/%d/r%d/k%d", s.seed, n, i))
	}
	r.pause = n%3 == 2 // rounds 2, 5, 8, …
	r.ttlHi = 2 * time.Second
	r.work = time.Duration(1000+r.rng.IntN(1000)) * time.Millisecond
	if r.pause {
		r.ttlHi = 800 * time.Millisecond
	}
	return r
}

// timing draws a TTL and renew interval: most often the minimum interval.
func (r *stressRound) timing(rng *rand.Rand) (time.Duration, time.Duration) {
	// Mostly short TTLs, so that a lease left to expire (a failed release)
	// blocks its key briefly; sometimes up to ttlHi.
	lo, hi := 300*time.Millisecond, r.ttlHi
	switch k := rng.IntN(20); {
	case k < 12:
		hi = 500 * time.Millisecond
	case k < 17:
		hi = min(hi, time.Second)
	}
	ttl := (lo + time.Duration(rng.Int64N(int64(hi-lo)+1))).Truncate(time.Millisecond)
	iv := renewlock.MinRenewInterval
	switch rng.IntN(6) {
	case 0, 1, 2, 3:
	case 4:
		iv += time.Duration(rng.Int64N(int64(40 * time.Millisecond)))
	default:
		iv += time.Duration(rng.Int64N(int64(ttl/3 - iv)))
	}
	for {
		old := r.maxTTL.Load()
		if int64(ttl) <= old || r.maxTTL.CompareAndSwap(old, int64(ttl)) {
			break
		}
	}
	return ttl, iv
}

func (r *stressRound) newRand() *rand.Rand {
	return rand.New(rand.NewPCG(r.s.seed, uint64(r.n)<<32|r.streams.Add(1)))
}

func (r *stressRound) run() {
	s := r.s
	s.c.rounds.Add(1)
	if r.pause {
		s.c.pauseRounds.Add(1)
	}
	leakBase := goleak.IgnoreCurrent()
	roundStart := time.Now()

	nClients := 2 + r.rng.IntN(3)
	for range nClients {
		r.startClient()
	}

	// Closes at random moments while goroutines are busy.
	for range r.rng.IntN(3) {
		at := time.Duration(r.rng.Int64N(int64(r.work)))
		crng := r.newRand()
		r.aux.Add(1)
		go func() {
			defer r.aux.Done()
			defer r.recoverPanic("closer")
			select {
			case <-time.After(at):
			case <-r.stopCh:
				return
			}
			r.closeRandom(crng, false)
		}()
	}

	stopAt := r.work
	if r.pause {
		pauseStart := time.Duration(200+r.rng.IntN(300)) * time.Millisecond
		// Longer than every TTL of the round (all are at most ttlHi).
		pauseLen := r.ttlHi + time.Duration(250+r.rng.IntN(200))*time.Millisecond
		closeIn := (r.n/3)%4 != 3 // three pause rounds of four: 2, 5, 8, not 11, …
		closeAfter := time.Duration(r.rng.Int64N(int64(20 * time.Millisecond)))
		// Work goes on for a while after Redis resumed.
		stopAt = pauseStart + 100*time.Millisecond + pauseLen + 700*time.Millisecond
		r.aux.Add(1)
		prng := r.newRand()
		go func() {
			defer r.aux.Done()
			defer r.recoverPanic("pauser")
			time.Sleep(pauseStart)
			// Pause while some lock is held, if one is within 100 ms.
			for range 100 {
				if r.someOpen() {
					break
				}
				time.Sleep(time.Millisecond)
			}
			r.doPause(prng, pauseLen, closeIn, closeAfter)
		}()
	}

	time.Sleep(stopAt)
	r.stopping.Store(true)
	close(r.stopCh)
	r.cancel()

	// Every goroutine must return: calls are bounded by their contexts and
	// by go-redis's timeouts (3 s), the pause by its length.
	// A goroutine stuck for good is reported with its stack and left
	// behind; the round's other checks still run, and later rounds too.
	hung := !waitTimeout(&r.workers, stressHang) || !waitTimeout(&r.aux, stressHang)
	if hung {
		s.violate(r, invHang, "", 0, "goroutines of the round still running %v after it ended:\n%s", stressHang, roundStacks())
	}

	// Invariant 2: every key free, before any Close could release an orphan.
	r.checkKeysFree()

	// Invariant 4 on Lock.Err of every lock (loss decides which count).
	r.mu.Lock()
	holds := append([]*holding(nil), r.holds...)
	clients := append([]*stressClient(nil), r.clients...)
	r.mu.Unlock()
	for _, h := range holds {
		if err := h.l.Err(); errors.Is(err, renewlock.ErrLeaseLost) {
			r.loss(h, "Lock.Err", err)
		}
	}

	for _, cl := range clients {
		if !cl.closing.Load() {
			r.closeClient(cl, false)
		}
	}
	for _, h := range holds {
		select {
		case <-h.l.Done():
		default:
			s.violate(r, invDoneOpen, h.key, 0, "lock (%s, token %d) still has Done open after every Client of the round was closed", h.via, h.l.Token())
		}
	}
	close(r.finalCh)
	r.watchers.Wait()

	// Invariant 3: Done by the validity deadline of a paused Redis.
	r.checkPauseDeadlines()

	for _, cl := range clients {
		_ = cl.rdb.Close()
	}
	if hung {
		// The stuck goroutines hold what they hold; don't count it twice.
	} else if err := goleak.Find(leakBase); err != nil {
		s.violate(r, invLeak, "", 0, "goroutines left after every Client of the round was closed: %v", err)
	}

	g := s.probe.maxGap(roundStart, time.Now())
	if g >= stressGap {
		s.mu.Lock()
		s.starved = append(s.starved, fmt.Sprintf("r%d:%v", r.n, g.Round(time.Millisecond)))
		s.mu.Unlock()
	}
	s.t.Logf("round %d: %v, pause %v, %d clients, %d locks obtained, longest TTL %v, longest scheduling gap %v",
		r.n, time.Since(roundStart).Round(time.Millisecond), r.pause, len(clients), len(holds),
		time.Duration(r.maxTTL.Load()), g.Round(time.Millisecond))
}

// roundStacks returns the stacks of the test's round goroutines (workers,
// closers, the pauser), not of the rest of the process.
func roundStacks() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "renewlock_test.(*stressRound)") && !strings.Contains(g, "(*stressRound).run(") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (r *stressRound) recoverPanic(who string) {
	if v := recover(); v != nil {
		buf := make([]byte, 64<<10)
		buf = buf[:runtime.Stack(buf, false)]
		r.s.violate(r, invPanic, "", 0, "%s panicked: %v\n%s", who, v, buf)
	}
}

// startClient creates a Client on its own go-redis client, with 8–16
// goroutines.
func (r *stressRound) startClient() {
	rng := r.newRand()
	ctxTO := rng.IntN(2) == 0
	rdb := redis.NewClient(&redis.Options{Addr: r.s.srv.Addr(), ContextTimeoutEnabled: ctxTO})
	ttl, iv := r.timing(rng)
	c, err := renewlock.New(rdb, quiet, renewlock.WithTTL(ttl), renewlock.WithRenewInterval(iv))
	if err != nil {
		_ = rdb.Close()
		r.s.violate(r, invErrors, "", 0, "New(ttl %v, interval %v): %v", ttl, iv, err)
		return
	}
	r.s.c.clientsCreated.Add(1)
	r.mu.Lock()
	cl := &stressClient{id: len(r.clients), c: c, rdb: rdb, ctxTO: ctxTO, ttl: ttl}
	r.clients = append(r.clients, cl)
	r.mu.Unlock()
	for range 8 + rng.IntN(9) {
		r.workers.Add(1)
		wrng := r.newRand()
		go func() {
			defer r.workers.Done()
			defer r.recoverPanic("worker")
			r.worker(cl, wrng)
		}()
	}
}

// closeRandom closes a random open Client and, unless the round ends,
// starts another in its place.
func (r *stressRound) closeRandom(rng *rand.Rand, inPause bool) {
	r.mu.Lock()
	var open []*stressClient
	for _, cl := range r.clients {
		if !cl.closing.Load() {
			open = append(open, cl)
		}
	}
	if inPause {
		// Prefer a Client that holds a lock: its Close must still close
		// Done by the deadline.
		var holders []*stressClient
		for _, h := range r.atPause {
			select {
			case <-h.l.Done():
			default:
				if !h.cl.closing.Load() {
					holders = append(holders, h.cl)
				}
			}
		}
		if len(holders) > 0 {
			open = holders
		}
	}
	var cl *stressClient
	if len(open) > 0 {
		cl = open[rng.IntN(len(open))]
		cl.closing.Store(true) // under r.mu: one closer per client
		cl.closeAt.Store(int64(time.Since(r.s.start)))
	}
	r.mu.Unlock()
	if cl == nil {
		return
	}
	r.s.c.clientsClosedMid.Add(1)
	if inPause {
		r.s.c.closesInPause.Add(1)
	}
	r.closeClient(cl, true)
	if !r.stopping.Load() {
		r.startClient()
	}
}

// closeClient closes cl and checks that every lock it had is done.
func (r *stressRound) closeClient(cl *stressClient, marked bool) {
	if !marked {
		cl.closing.Store(true)
		cl.closeAt.Store(int64(time.Since(r.s.start)))
	}
	err := cl.c.Close()
	cl.closed.Store(true)
	if err != nil {
		r.s.c.closeErrors.Add(1)
	}
	r.mu.Lock()
	var open []*holding
	for _, h := range r.holds {
		if h.cl != cl {
			continue
		}
		select {
		case <-h.l.Done():
		default:
			open = append(open, h)
		}
	}
	r.mu.Unlock()
	for _, h := range open {
		r.s.violate(r, invDoneOpen, h.key, 0, "Close of client %d returned (err %v) with the lock (%s, token %d) still open", cl.id, err, h.via, h.l.Token())
	}
}

// someOpen reports whether some lock of the round has Done open.
func (r *stressRound) someOpen() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.reg {
		for h := range m {
			select {
			case <-h.l.Done():
			default:
				return true
			}
		}
	}
	return false
}

// doPause stops Redis for d, optionally closing a Client during the pause.
func (r *stressRound) doPause(rng *rand.Rand, d time.Duration, closeIn bool, closeAfter time.Duration) {
	// Not srv.Pause: it would call t.Fatal outside the test goroutine.
	if err := r.s.srv.Server.Pause(); err != nil {
		r.s.t.Errorf("stress: pausing Redis: %v", err)
		return
	}
	p := time.Now()
	r.mu.Lock()
	r.pausedAt = p
	for _, h := range r.holds {
		select {
		case <-h.l.Done():
		default:
			r.atPause = append(r.atPause, h)
		}
	}
	r.mu.Unlock()
	if closeIn {
		r.aux.Add(1)
		go func() {
			defer r.aux.Done()
			defer r.recoverPanic("closer in pause")
			time.Sleep(closeAfter)
			r.closeRandom(rng, true)
		}()
	}
	time.Sleep(time.Until(p.Add(d)))
	if err := r.s.srv.Server.Resume(); err != nil {
		r.s.t.Errorf("stress: resuming Redis: %v", err)
	}
	r.mu.Lock()
	r.resumed = time.Now()
	r.mu.Unlock()
}

// obtain registers a lock just obtained and checks exclusion (invariant 1).
func (r *stressRound) obtain(cl *stressClient, key string, l *renewlock.Lock, via string, ttl time.Duration, called time.Time) *holding {
	h := &holding{key: key, cl: cl, l: l, via: via, ttl: ttl, called: called, obtained: time.Now()}
	r.mu.Lock()
	var others []*holding
	for o := range r.reg[key] {
		select {
		case <-o.l.Done():
			continue
		default:
		}
		if o.releasing.Load() || o.cl.closing.Load() {
			continue
		}
		others = append(others, o)
	}
	if r.reg[key] == nil {
		r.reg[key] = map[*holding]struct{}{}
	}
	r.reg[key][h] = struct{}{}
	r.holds = append(r.holds, h)
	pausedAt, resumed := r.pausedAt, r.resumed
	r.mu.Unlock()
	for _, o := range others {
		// Re-check: Done may have closed between the scan and now; only
		// one still open counts.
		select {
		case <-o.l.Done():
			continue
		default:
		}
		if o.releasing.Load() || o.cl.closing.Load() {
			continue
		}
		pauseNote := ""
		if !pausedAt.IsZero() {
			pauseNote = fmt.Sprintf(" (Redis paused at +%v, resumed at +%v of the round)", pausedAt.Sub(r.s.start).Round(time.Millisecond), resumed.Sub(r.s.start).Round(time.Millisecond))
		}
		r.s.violate(r, invExclusion, key, r.s.probe.maxGap(o.obtained, time.Now()),
			"client %d obtained the lock by %s (token %d) while client %d's lock (%s, token %d, TTL %v, obtained %v earlier) still has Done open and is not releasing%s",
			cl.id, via, l.Token(), o.cl.id, o.via, o.l.Token(), o.ttl, h.obtained.Sub(o.obtained).Round(time.Millisecond), pauseNote)
	}
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		select {
		case <-l.Done():
			h.doneAt.Store(int64(time.Since(r.s.start)))
		case <-r.finalCh:
			return
		}
		r.mu.Lock()
		delete(r.reg[key], h)
		r.mu.Unlock()
	}()
	return h
}

// loss reports an ErrLeaseLost in a round without a pause, or of a lock
// whose call began after the pause ended (invariant 4). (A call made before
// or during the pause may return a lock already past its deadline, since the
// deadline counts from the send: that loss has a cause.)
func (r *stressRound) loss(h *holding, where string, err error) {
	if r.pause {
		r.mu.Lock()
		p, resumed := r.pausedAt, r.resumed
		r.mu.Unlock()
		lostAt := time.Now() // a Release or Do reporting it now
		if d := h.doneAt.Load(); d != 0 && where == "Lock.Err" {
			lostAt = r.s.start.Add(time.Duration(d))
		}
		if !p.IsZero() && lostAt.After(p) && (resumed.IsZero() || !h.called.After(resumed)) {
			return // the pause may have caused it
		}
	}
	if !h.lossSeen.CompareAndSwap(false, true) {
		return
	}
	closing := ""
	if h.cl.closing.Load() {
		closing = " (its client was closing)"
	}
	r.s.violate(r, invLoss, h.key, r.s.probe.maxGap(h.obtained, time.Now()),
		"%s reports a loss without a cause for the lock (%s, token %d, TTL %v)%s: %s", where, h.via, h.l.Token(), h.ttl, closing,
		strings.ReplaceAll(err.Error(), "\n", " | "))
}

// call registers an API call and returns opts plus a WithHolder naming it,
// so that a lease left in Redis can be traced to the call that took it (a
// hand-off writes the waiting call's holder).
func (r *stressRound) call(cl *stressClient, what string, opts []renewlock.Option) (int64, []renewlock.Option) {
	id := r.callSeq.Add(1)
	r.mu.Lock()
	r.calls[id] = fmt.Sprintf("client %d: %s at +%v", cl.id, what, time.Since(r.s.start).Round(time.Millisecond))
	r.mu.Unlock()
	out := append(append([]renewlock.Option(nil), opts...), renewlock.WithHolder(fmt.Sprintf("stress/r%d/#%d", r.n, id)))
	return id, out
}

// returned records the outcome of call id.
func (r *stressRound) returned(id int64, l *renewlock.Lock, err error) {
	res := fmt.Sprintf("%v", err)
	if l != nil {
		res = fmt.Sprintf("a lock (token %d)", l.Token())
	}
	r.mu.Lock()
	r.calls[id] += fmt.Sprintf(", returned at +%v: %s", time.Since(r.s.start).Round(time.Millisecond), res)
	r.mu.Unlock()
}

// acquireCtx draws the context of an Acquire or Do: already cancelled, 0–5
// ms, or long (TTL/2 to 2×TTL, but cancelled when the round stops).
func (r *stressRound) acquireCtx(rng *rand.Rand, ttl time.Duration) (context.Context, context.CancelFunc, string) {
	switch k := rng.IntN(10); {
	case k == 0:
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx, cancel, "ctx cancelled"
	case k < 7:
		d := time.Duration(rng.Int64N(int64(5*time.Millisecond) + 1))
		ctx, cancel := context.WithTimeout(context.Background(), d)
		return ctx, cancel, fmt.Sprintf("ctx %v", d)
	default:
		d := ttl/2 + time.Duration(rng.Int64N(int64(3*ttl/2)))
		ctx, cancel := context.WithTimeout(r.ctx, d)
		return ctx, cancel, fmt.Sprintf("ctx %v", d)
	}
}

// holdFor draws how long a holder keeps a lock: 0–3 ms, and in one case
// of three 4–20 ms, so that renewals (every 10 ms at the shortest interval,
// sent from 5 ms on) are on the wire while releases run.
func holdFor(rng *rand.Rand) time.Duration {
	if rng.IntN(3) == 0 {
		return 4*time.Millisecond + time.Duration(rng.Int64N(int64(16*time.Millisecond)+1))
	}
	return time.Duration(rng.Int64N(int64(3*time.Millisecond) + 1))
}

// pickKey draws a key: the first is hot (half of all calls), so that many
// goroutines of one Client queue for it and releases hand it over.
func (r *stressRound) pickKey(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		return r.keys[0]
	}
	return r.keys[rng.IntN(len(r.keys))]
}

// worker runs random operations on cl until the round stops or cl is closed.
func (r *stressRound) worker(cl *stressClient, rng *rand.Rand) {
	extra := 1 // calls made after Close began, racing with it
	for !r.stopping.Load() {
		if cl.closing.Load() {
			if extra == 0 {
				for !cl.closed.Load() && !r.stopping.Load() {
					time.Sleep(time.Millisecond)
				}
				if cl.closed.Load() {
					r.callOnClosed(cl, rng)
				}
				return
			}
			extra--
		}
		key := r.pickKey(rng)
		var opts []renewlock.Option
		ttl := time.Duration(0)
		if rng.IntN(10) < 3 {
			var iv time.Duration
			ttl, iv = r.timing(rng)
			opts = []renewlock.Option{renewlock.WithTTL(ttl), renewlock.WithRenewInterval(iv)}
		}
		switch k := rng.IntN(10); {
		case k < 5:
			r.opAcquire(cl, rng, key, ttl, opts)
		case k < 7:
			r.opTry(cl, rng, key, ttl, opts)
		default:
			r.opDo(cl, rng, key, ttl, opts)
		}
	}
}

// lockTTL is the TTL a lock gets: the per-call one, else the Client's.
func lockTTL(cl *stressClient, callTTL time.Duration) time.Duration {
	if callTTL != 0 {
		return callTTL
	}
	return cl.ttl
}

// checkAcquireErr applies invariant 5 to an Acquire or Do that failed to
// acquire.
func (r *stressRound) checkAcquireErr(cl *stressClient, op, key string, ctx context.Context, err error, ctxDoneBefore, closedBefore bool) {
	c := &r.s.c
	switch {
	case errors.Is(err, renewlock.ErrNotAcquired):
		r.s.violate(r, invErrors, key, 0, "%s returned ErrNotAcquired (ctx err %v): %v", op, ctx.Err(), err)
	case closedBefore:
		c.callsOnClosed.Add(1)
		if !errors.Is(err, renewlock.ErrClientClosed) {
			r.s.violate(r, invErrors, key, 0, "%s on a closed client: %v, want ErrClientClosed", op, err)
		}
	case errors.Is(err, renewlock.ErrClientClosed) && cl.closing.Load():
		c.acqClosedClient.Add(1)
	case ctx.Err() != nil:
		c.acqTimeouts.Add(1)
		if ctxDoneBefore {
			c.acqCancelledBefore.Add(1)
		}
		if !errors.Is(err, ctx.Err()) {
			r.s.violate(r, invErrors, key, 0, "%s whose ctx ended (%v) returned an error not wrapping it: %v", op, ctx.Err(), err)
		}
	default:
		c.acqOtherErrs.Add(1)
		r.s.violate(r, invErrors, key, 0, "%s failed although its ctx is live and its client open: %v", op, err)
	}
}

func (r *stressRound) opAcquire(cl *stressClient, rng *rand.Rand, key string, ttl time.Duration, opts []renewlock.Option) {
	ctx, cancel, desc := r.acquireCtx(rng, lockTTL(cl, ttl))
	defer cancel()
	id, opts := r.call(cl, "Acquire("+key+", "+desc+")", opts)
	closedBefore, ctxDoneBefore := cl.closed.Load(), ctx.Err() != nil
	called := time.Now()
	l, err := cl.c.Acquire(ctx, key, opts...)
	r.returned(id, l, err)
	if err != nil {
		r.checkAcquireErr(cl, "Acquire", key, ctx, err, ctxDoneBefore, closedBefore)
		return
	}
	r.s.c.acqAcquire.Add(1)
	h := r.obtain(cl, key, l, "Acquire", lockTTL(cl, ttl), called)
	if closedBefore {
		r.s.violate(r, invErrors, key, 0, "Acquire on a closed client returned a lock (token %d)", l.Token())
	}
	time.Sleep(holdFor(rng))
	r.release(h, rng)
}

func (r *stressRound) opTry(cl *stressClient, rng *rand.Rand, key string, ttl time.Duration, opts []renewlock.Option) {
	var ctx context.Context
	var cancel context.CancelFunc
	desc := "background ctx"
	switch rng.IntN(10) {
	case 0:
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		desc = "ctx cancelled"
	case 1, 2:
		d := time.Duration(rng.Int64N(int64(2*time.Millisecond) + 1))
		ctx, cancel = context.WithTimeout(context.Background(), d)
		desc = fmt.Sprintf("ctx %v", d)
	default:
		ctx, cancel = context.WithCancel(context.Background())
	}
	defer cancel()
	id, opts := r.call(cl, "TryAcquire("+key+", "+desc+")", opts)
	closedBefore, ctxDoneBefore := cl.closed.Load(), ctx.Err() != nil
	called := time.Now()
	l, err := cl.c.TryAcquire(ctx, key, opts...)
	r.returned(id, l, err)
	c := &r.s.c
	if err != nil {
		switch {
		case closedBefore:
			c.callsOnClosed.Add(1)
			if !errors.Is(err, renewlock.ErrClientClosed) {
				r.s.violate(r, invErrors, key, 0, "TryAcquire on a closed client: %v, want ErrClientClosed", err)
			}
		case errors.Is(err, renewlock.ErrClientClosed) && cl.closing.Load():
			c.acqClosedClient.Add(1)
		case ctxDoneBefore:
			c.tryCancelledBefore.Add(1)
			if !errors.Is(err, ctx.Err()) || errors.Is(err, renewlock.ErrNotAcquired) {
				r.s.violate(r, invErrors, key, 0, "TryAcquire with a ctx already ended (%v): %v", ctx.Err(), err)
			}
		case errors.Is(err, renewlock.ErrNotAcquired):
			c.tryHeld.Add(1)
		default:
			// A Redis error or timeout: expected only while Redis is
			// paused, or when the ctx ended during the call.
			c.tryOtherErr.Add(1)
			if !r.pause && ctx.Err() == nil {
				r.s.violate(r, invErrors, key, 0, "TryAcquire failed although Redis runs, its ctx is live and its client open: %v", err)
			}
		}
		return
	}
	c.acqTry.Add(1)
	h := r.obtain(cl, key, l, "TryAcquire", lockTTL(cl, ttl), called)
	if closedBefore {
		r.s.violate(r, invErrors, key, 0, "TryAcquire on a closed client returned a lock (token %d)", l.Token())
	}
	time.Sleep(holdFor(rng))
	r.release(h, rng)
}

// release releases h with a cancelled, short or background context.
func (r *stressRound) release(h *holding, rng *rand.Rand) {
	c := &r.s.c
	var ctx context.Context
	var cancel context.CancelFunc
	switch k := rng.IntN(20); {
	case k < 3:
		c.relCancelled.Add(1)
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
	case k < 10:
		c.relShort.Add(1)
		ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rng.Int64N(int64(2*time.Millisecond)+1)))
	default:
		c.relBackground.Add(1)
		ctx, cancel = context.WithCancel(context.Background())
	}
	defer cancel()
	h.releasing.Store(true)
	err := h.l.Release(ctx)
	switch {
	case err == nil:
	case errors.Is(err, renewlock.ErrLeaseLost):
		c.relLost.Add(1)
		r.loss(h, "Release", err)
	default:
		c.relFailed.Add(1)
		// A later Release tries again (documented): most often at once, and
		// always on the hot key, so that keys are not blocked for a whole
		// TTL too often; else the lease is left to expire.
		if h.key == r.keys[0] || rng.IntN(4) > 0 {
			c.relRetried.Add(1)
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			rerr := h.l.Release(rctx)
			rcancel()
			if errors.Is(rerr, renewlock.ErrLeaseLost) {
				c.relLost.Add(1)
				r.loss(h, fmt.Sprintf("Release retried after a failed Release (%v)", err), rerr)
			} else if rerr != nil {
				c.relRetryFailed.Add(1)
			}
		}
	}
	select {
	case <-h.l.Done():
	default:
		r.s.violate(r, invDoneOpen, h.key, 0, "Release returned (%v) with Done open (token %d)", err, h.l.Token())
	}
}

var (
	errStressFn    = errors.New("stress: fn failed")
	errStressPanic = errors.New("stress: fn panicked")
)

func (r *stressRound) opDo(cl *stressClient, rng *rand.Rand, key string, ttl time.Duration, opts []renewlock.Option) {
	ctx, cancel, desc := r.acquireCtx(rng, lockTTL(cl, ttl))
	defer cancel()
	id, opts := r.call(cl, "Do("+key+", "+desc+")", opts)
	closedBefore, ctxDoneBefore := cl.closed.Load(), ctx.Err() != nil
	hold := holdFor(rng)
	outcome := rng.IntN(10) // 0: error, 1: panic, else nil
	var h *holding
	var err error
	panicked := func() (p any) {
		defer func() { p = recover() }()
		called := time.Now()
		err = cl.c.Do(ctx, key, func(fctx context.Context, l *renewlock.Lock) error {
			r.s.c.acqDo.Add(1)
			h = r.obtain(cl, key, l, "Do", lockTTL(cl, ttl), called)
			defer h.releasing.Store(true) // Do's release follows
			if closedBefore {
				r.s.violate(r, invErrors, key, 0, "Do on a closed client ran its function (token %d)", l.Token())
			}
			select {
			case <-time.After(hold):
			case <-fctx.Done():
			}
			switch outcome {
			case 0:
				return errStressFn
			case 1:
				panic(errStressPanic)
			}
			return nil
		}, opts...)
		return nil
	}()
	c := &r.s.c
	if h != nil {
		r.returned(id, nil, fmt.Errorf("ran fn with token %d; Do returned %v (panicked: %v)", h.l.Token(), err, panicked != nil))
	} else {
		r.returned(id, nil, err)
	}
	if panicked != nil {
		if panicked != errStressPanic { //nolint:errorlint // identity of our own value
			panic(panicked)
		}
		c.doPanics.Add(1)
	}
	if h == nil {
		if panicked == nil && err != nil {
			r.checkAcquireErr(cl, "Do", key, ctx, err, ctxDoneBefore, closedBefore)
		} else if panicked == nil {
			r.s.violate(r, invErrors, key, 0, "Do returned nil without running its function")
		}
		return
	}
	if outcome == 0 {
		c.doFnErr.Add(1)
		if !errors.Is(err, errStressFn) {
			r.s.violate(r, invErrors, key, 0, "Do's error %v does not wrap fn's error", err)
		}
	}
	if errors.Is(err, renewlock.ErrLeaseLost) {
		r.loss(h, "Do", err)
	}
	select {
	case <-h.l.Done():
		if e := h.l.Err(); e == nil {
			r.s.violate(r, invDoneOpen, key, 0, "Do returned with Done closed but Err nil")
		}
	default:
		r.s.violate(r, invDoneOpen, key, 0, "Do returned (panicked: %v, err %v) with its lock's Done open (token %d)", panicked != nil, err, h.l.Token())
	}
}

// callOnClosed makes one call on a closed Client: it must fail with
// ErrClientClosed (invariant 5).
func (r *stressRound) callOnClosed(cl *stressClient, rng *rand.Rand) {
	key := r.pickKey(rng)
	switch rng.IntN(3) {
	case 0:
		r.opAcquire(cl, rng, key, 0, nil)
	case 1:
		r.opTry(cl, rng, key, 0, nil)
	default:
		r.opDo(cl, rng, key, 0, nil)
	}
}

// checkKeysFree waits until no key of the round has an owner in Redis
// (invariant 2). A key still owned after the longest TTL + slack, with a
// PTTL that stays near its TTL, is renewed by a Client for nobody.
func (r *stressRound) checkKeysFree() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: r.s.srv.Addr()})
	defer rdb.Close()
	limit := time.Duration(r.maxTTL.Load()) + stressFreeSlack
	start := time.Now()
	deadline := start.Add(limit)
	pending := append([]string(nil), r.keys...)
	for len(pending) > 0 {
		var still []string
		for _, k := range pending {
			o, err := rdb.HGet(ctx, renewlock.DefaultKeyPrefix+k, "o").Result()
			if err == nil && o != "" {
				still = append(still, k)
			} else if err != nil && !errors.Is(err, redis.Nil) {
				still = append(still, k)
			}
		}
		pending = still
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range pending {
		rk := renewlock.DefaultKeyPrefix + k
		f, _ := rdb.HGetAll(ctx, rk).Result()
		p1 := rdb.PTTL(ctx, rk).Val()
		time.Sleep(100 * time.Millisecond)
		p2 := rdb.PTTL(ctx, rk).Val()
		renewed := "not renewed: a lease nobody renews, yet it outlived the limit"
		if p2 > p1-90*time.Millisecond {
			renewed = "renewed: an orphaned lease"
		}
		owner := f["o"]
		if len(owner) > 8 {
			owner = owner[:8]
		}
		// Which of our locks has this token, if any; which call took it.
		which := "no *Lock the test obtained has this token"
		r.mu.Lock()
		for _, h := range r.holds {
			if h.key == k && strconv.FormatUint(h.l.Token(), 10) == f["t"] {
				which = fmt.Sprintf("it is the lock obtained by %s on client %d (Err %v)", h.via, h.cl.id, h.l.Err())
			}
		}
		if _, idStr, ok := strings.Cut(f["h"], "#"); ok {
			id, _ := strconv.ParseInt(idStr, 10, 64)
			which += fmt.Sprintf("; holder %q is the call %s", f["h"], r.calls[id])
		}
		r.mu.Unlock()
		r.s.violate(r, invKeyFree, k, 0,
			"key still owned %v after every goroutine returned and released (limit: longest TTL %v + %v): owner %s…, token %s, PTTL %v then %v 100 ms later (%s); %s",
			time.Since(start).Round(time.Millisecond), time.Duration(r.maxTTL.Load()), stressFreeSlack, owner, f["t"], p1, p2, renewed, which)
	}
}

// checkPauseDeadlines checks invariant 3 once every lock of the round is
// done. The locks checked are those with Done open when Redis was stopped at
// P, and those returned later whose acquisition Redis executed before P (a
// reply held back by the pause): the token is never below the server clock
// in µs at execution, and the server runs on this machine's clock.
func (r *stressRound) checkPauseDeadlines() {
	r.mu.Lock()
	p, resumed := r.pausedAt, r.resumed
	cands := append([]*holding(nil), r.atPause...)
	if !p.IsZero() {
		for _, h := range r.holds {
			if h.obtained.After(p) && h.l.Token() < uint64(p.UnixMicro()) {
				cands = append(cands, h)
			}
		}
	}
	r.mu.Unlock()
	if p.IsZero() {
		return
	}
	start := r.s.start
	for _, h := range cands {
		v := time.Duration(float64(h.ttl)*(1-renewlock.DefaultDrift)) - renewlock.DefaultSafetyMargin
		bound := p.Add(v + stressDeadlineSlack)
		at := h.doneAt.Load()
		doneAt := start.Add(time.Duration(at))
		if at != 0 && !doneAt.After(bound) {
			continue
		}
		late := "never"
		if at != 0 {
			late = fmt.Sprintf("%v after the pause began", doneAt.Sub(p).Round(time.Millisecond))
		}
		when := "held when Redis was paused"
		if h.obtained.After(p) {
			when = fmt.Sprintf("taken in Redis before the pause, returned by %s %v after it began", h.via, h.obtained.Sub(p).Round(time.Millisecond))
		}
		closing := ""
		if ca := h.cl.closeAt.Load(); ca != 0 {
			closeAt := start.Add(time.Duration(ca))
			if closeAt.Before(bound) {
				closing = fmt.Sprintf("; client %d's Close began %v after the pause began", h.cl.id, closeAt.Sub(p).Round(time.Millisecond))
			}
		}
		lateness := time.Duration(0)
		if at != 0 {
			lateness = doneAt.Sub(bound)
		}
		excuse := r.s.probe.maxGap(p, bound.Add(lateness))
		if excuse < lateness || at == 0 {
			excuse = 0 // a starvation shorter than the lateness explains nothing
		}
		r.s.violate(r, invDeadline, h.key, excuse,
			"lock (%s, token %d, TTL %v, %s%s): Done closed %s, Redis resumed %v after it; the validity deadline is at most %v after the pause began (+%v slack); Err %v",
			h.via, h.l.Token(), h.ttl, when, closing, late, resumed.Sub(p).Round(time.Millisecond), v, stressDeadlineSlack, h.l.Err())
	}
}

// gapProbe records every moment the test process was not scheduled for more
// than stressGap: a goroutine that wakes every millisecond notes how late it
// is.
type gapProbe struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	gaps [][2]time.Time
}

func startGapProbe() *gapProbe {
	p := &gapProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		last := time.Now()
		for {
			select {
			case <-p.stop:
				return
			case <-tk.C:
			}
			now := time.Now()
			if now.Sub(last) > stressGap {
				p.mu.Lock()
				p.gaps = append(p.gaps, [2]time.Time{last, now})
				p.mu.Unlock()
			}
			last = now
		}
	}()
	return p
}

func (p *gapProbe) close() {
	close(p.stop)
	<-p.done
}

// maxGap returns the longest gap overlapping [from, to].
func (p *gapProbe) maxGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m time.Duration
	for _, g := range p.gaps {
		if g[1].Before(from) || g[0].After(to) {
			continue
		}
		m = max(m, g[1].Sub(g[0]))
	}
	return m
}
