package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// The failover harness (issue 9): clients of several variants (with and
// without WithReplicaAck) contend for locks on a replicated topology while a
// fault is injected. Every acquisition is recorded with its validity
// interval (from Acquire's return until the holder stopped: Done closed or
// Release began), every write under a lock goes to a fenced register, and
// the analysis reports, per variant: overlaps of two holders of one key
// (how many, how long), how fast holders learned of losses, whether tokens
// rose strictly, how many stale writes the register refused.
//
// What must hold is asserted by the tests; what Redis does not guarantee is
// measured and logged (and, with RENEWLOCK_FAILOVER_LONG=1, repeated).

const (
	foTTL        = time.Second
	foAckTimeout = 100 * time.Millisecond
	foClients    = 3 // renewlock Clients per variant, each on its own go-redis client
	// foMargin is the safety margin of every lock: it must cover the
	// scheduling delays of this process on a loaded CI machine, or a late
	// timer reads as an overlap (README: raise WithSafetyMargin above your
	// worst scheduling pause).
	foMargin = 100 * time.Millisecond
)

// foLong says whether to repeat each failover scenario (for the numbers in
// GUARANTEES.md) rather than run it once.
func foLong() bool { return os.Getenv("RENEWLOCK_FAILOVER_LONG") != "" }

// foRounds is how often a scenario runs: once in CI, more with
// RENEWLOCK_FAILOVER_LONG=1 (RENEWLOCK_FAILOVER_ROUNDS=N to choose).
func foRounds() int {
	if !foLong() {
		return 1
	}
	var n int
	if _, err := fmt.Sscan(os.Getenv("RENEWLOCK_FAILOVER_ROUNDS"), &n); err == nil && n > 0 {
		return n
	}
	return 5
}

// foVariant is one kind of client in a scenario.
type foVariant struct {
	name string
	opts []renewlock.Option
	// ackAll: the variant asks every replica to acknowledge, so the replica
	// promoted has every write its holders count on.
	ackAll bool
}

func noAck() foVariant { return foVariant{name: "no ack"} }

func ackN(n, replicas int) foVariant {
	return foVariant{name: fmt.Sprintf("ack %d", n), opts: []renewlock.Option{renewlock.WithReplicaAck(n, foAckTimeout)}, ackAll: n >= replicas}
}

// foAcq is one acquisition.
type foAcq struct {
	variant, key string
	client       int
	token        uint64
	called, got  time.Time // Acquire called, returned
	end          time.Time // the holder stopped: Done closed, or Release began
	doneAt       time.Time // Done closed during the hold (zero: released first)
	lost         bool      // told of a loss: Done with ErrLeaseLost, or Release returning it
	atRelease    bool      // told only by Release
	why          string    // the loss's error
}

// foRecorder collects a scenario's history and is the fenced register.
type foRecorder struct {
	mu       sync.Mutex
	acqs     []*foAcq
	register map[string]uint64         // key → largest token accepted
	accepted map[string]int            // variant → writes accepted
	stale    map[string]int            // variant → stale writes refused
	acqErrs  map[string]map[string]int // variant → error class → count
	errText  map[string]string         // variant → an example of "other"
	warnings map[string][]foWarning    // variant → what its Clients logged
}

// foWarning is one line a Client logged (a renewal that failed).
type foWarning struct {
	at   time.Time
	text string
}

// foLog records what the Clients of a variant log.
type foLog struct {
	rec     *foRecorder
	variant string
}

func (l foLog) Write(p []byte) (int, error) {
	l.rec.mu.Lock()
	defer l.rec.mu.Unlock()
	if w := l.rec.warnings[l.variant]; len(w) < 1000 {
		l.rec.warnings[l.variant] = append(w, foWarning{time.Now(), strings.TrimSpace(string(p))})
	}
	return len(p), nil
}

func newFoRecorder() *foRecorder {
	return &foRecorder{register: map[string]uint64{}, accepted: map[string]int{}, stale: map[string]int{},
		acqErrs: map[string]map[string]int{}, errText: map[string]string{}, warnings: map[string][]foWarning{}}
}

// write is the fenced register: a write with a token below the largest
// accepted for the key is refused.
func (r *foRecorder) write(variant, key string, token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if token < r.register[key] {
		r.stale[variant]++
		return
	}
	r.register[key] = token
	r.accepted[variant]++
}

func (r *foRecorder) acqErr(variant string, err error) {
	class := "other"
	switch {
	case errors.Is(err, renewlock.ErrNotReplicated):
		class = "not replicated"
	case errors.Is(err, context.DeadlineExceeded):
		class = "deadline"
	case errors.Is(err, context.Canceled):
		class = "cancelled"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.acqErrs[variant] == nil {
		r.acqErrs[variant] = map[string]int{}
	}
	r.acqErrs[variant][class]++
	if class == "other" && r.errText[variant] == "" {
		r.errText[variant] = err.Error()
	}
}

func (r *foRecorder) add(a *foAcq) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acqs = append(r.acqs, a)
}

// foScenario is one fault against one topology.
type foScenario struct {
	name     string
	variants []foVariant
	// newRDB returns a new go-redis client for one renewlock Client.
	newRDB func() redis.UniversalClient
	// key returns the Redis-side-free key name of a variant's lock of a
	// kind ("short": taken and released over and over; "long": held until
	// lost).
	key func(v foVariant, kind string) string
	// warm is how long the workload runs before the fault.
	warm time.Duration
	// fault injects the fault and returns when it began, once the topology
	// serves again (a new primary, or the old one back).
	fault func(t *testing.T, ctx context.Context) time.Time
	// after is how long the workload runs once fault returned.
	after time.Duration
	// ttl of every lock; default foTTL.
	ttl time.Duration
	// dataLost: the fault empties every node (a restart without
	// persistence, whose replicas resynchronize from it), so replica
	// acknowledgements cannot help: overlaps are measured, not asserted.
	dataLost bool
}

// foReport is what one variant saw in one run.
type foReport struct {
	variant                string
	acqs, errs             int
	errClasses             string
	losses, atRelease      int
	learn                  []time.Duration // Done closed − fault, per loss after the fault
	overlaps               int
	maxOverlap             time.Duration
	untold                 int // overlapped holders never told of a loss
	tokenViolations        []string
	events                 []string // losses and overlaps, relative to the fault
	accepted, stale        int
	firstAfter             time.Duration // fault → first acquisition after it (−1: none)
	held                   int
	survived               int // holders at the fault never told of a loss
	closeTime, workersTime time.Duration
	// maxStall is the longest this process went without running a 10 ms
	// ticker (CPU starvation on a loaded machine): a stall longer than a
	// lease's slack loses it by design.
	maxStall time.Duration
}

func (r foReport) String() string {
	learn := "–"
	if len(r.learn) > 0 {
		s := slices.Clone(r.learn)
		slices.Sort(s)
		learn = fmt.Sprintf("%v / %v / %v", s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
	}
	first := "none"
	if r.firstAfter >= 0 {
		first = r.firstAfter.Round(time.Millisecond).String()
	}
	tok := "ok"
	if len(r.tokenViolations) > 0 {
		tok = fmt.Sprintf("%d VIOLATIONS", len(r.tokenViolations))
	}
	return fmt.Sprintf("%-7s | acq %d, errors %d (%s) | losses %d (%d at release), learned after fault min/p50/max %s | overlaps %d (max %v, %d never told) | tokens %s | writes %d ok / %d stale refused | first acquisition after fault %s | held at fault %d, kept %d | longest stall of this process %v",
		r.variant, r.acqs, r.errs, r.errClasses, r.losses, r.atRelease, learn, r.overlaps, r.maxOverlap.Round(time.Millisecond),
		r.untold, tok, r.accepted, r.stale, first, r.held, r.survived, r.maxStall.Round(time.Millisecond))
}

// runFailover runs sc once and returns a report per variant. It fails t on
// what must hold: tokens strictly rising per key, workers and Close
// returning in time, and, for variants that ask every replica, no overlap
// and no holder overlapped without being told — unless the fault lost the
// data of every node.
func runFailover(t *testing.T, sc foScenario) []foReport {
	t.Helper()
	rec := newFoRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var clients []*renewlock.Client
	ttl := sc.ttl
	if ttl == 0 {
		ttl = foTTL
	}
	for _, v := range sc.variants {
		for i := range foClients {
			logger := renewlock.WithLogger(slog.New(slog.NewTextHandler(foLog{rec, v.name}, &slog.HandlerOptions{Level: slog.LevelWarn})))
			opts := append([]renewlock.Option{logger, renewlock.WithTTL(ttl), renewlock.WithSafetyMargin(foMargin)}, v.opts...)
			c, err := renewlock.New(sc.newRDB(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
			for _, kind := range []string{"short", "long"} {
				key := sc.key(v, kind)
				wg.Go(func() { foWorker(ctx, rec, c, v.name, key, i, kind == "long") })
			}
		}
	}
	stall := watchStalls(ctx)
	time.Sleep(sc.warm)
	faultAt := sc.fault(t, ctx)
	time.Sleep(sc.after)
	stopAt := time.Now()
	cancel()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("%s: workers still running 20 s after the stop (a hang):\n%s", sc.name, buf[:runtime.Stack(buf, true)])
	}
	workersTime := time.Since(stopAt)
	closeStart := time.Now()
	for _, c := range clients {
		start := time.Now()
		_ = c.Close()
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("%s: Close took %v", sc.name, d)
		}
	}
	closeTime := time.Since(closeStart)

	var reports []foReport
	for _, v := range sc.variants {
		r := analyze(rec, v.name, faultAt)
		r.closeTime, r.workersTime, r.maxStall = closeTime, workersTime, stall()
		for _, tv := range r.tokenViolations {
			t.Errorf("%s, %s: fencing token not strictly rising: %s", sc.name, v.name, tv)
		}
		// Every write a holder counts on is on every replica, so also on
		// the one promoted: a failover of any kind cannot admit a second
		// holder (clean or not).
		if v.ackAll && !sc.dataLost && r.overlaps > 0 {
			t.Errorf("%s, %s: %d overlaps (max %v) although every replica acknowledged: %v", sc.name, v.name, r.overlaps, r.maxOverlap, r.events)
		}
		if v.ackAll && !sc.dataLost && r.untold > 0 {
			t.Errorf("%s, %s: %d holders overlapped by another were never told", sc.name, v.name, r.untold)
		}
		reports = append(reports, r)
	}
	return reports
}

// watchStalls measures, until ctx ends, the longest gap between ticks of a
// 10 ms ticker beyond its period; the function returned reads it.
func watchStalls(ctx context.Context) func() time.Duration {
	var mu sync.Mutex
	var worst time.Duration
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				now := time.Now()
				mu.Lock()
				worst = max(worst, now.Sub(last)-10*time.Millisecond)
				mu.Unlock()
				last = now
			}
		}
	}()
	return func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return worst
	}
}

// foWorker takes key over and over until ctx ends: Acquire (bounded), then
// hold it — writing to the fenced register every 10 ms — for a short random
// time, or (long) until the lock is lost or ctx ends; then Release.
func foWorker(ctx context.Context, rec *foRecorder, c *renewlock.Client, variant, key string, client int, long bool) {
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		called := time.Now()
		l, err := c.Acquire(actx, key)
		cancel()
		if err != nil {
			// Waiters for the long lock give up every 2 s: not an error.
			if ctx.Err() == nil && !(long && errors.Is(err, context.DeadlineExceeded)) {
				rec.acqErr(variant, err)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		a := &foAcq{variant: variant, key: key, client: client, token: l.Token(), called: called, got: time.Now()}
		hold := time.Duration(20+rand.IntN(180)) * time.Millisecond
		if long {
			hold = time.Hour
		}
		tick := time.NewTicker(10 * time.Millisecond)
		timer := time.NewTimer(hold)
	holding:
		for {
			select {
			case <-l.Done():
				a.doneAt = time.Now()
				break holding
			case <-timer.C:
				break holding
			case <-ctx.Done():
				break holding
			case <-tick.C:
				rec.write(variant, key, a.token)
			}
		}
		tick.Stop()
		timer.Stop()
		a.end = time.Now()
		if !a.doneAt.IsZero() {
			a.end = a.doneAt
		}
		rerr := foRelease(l)
		switch {
		case errors.Is(l.Err(), renewlock.ErrLeaseLost) && !a.doneAt.IsZero():
			a.lost, a.why = true, l.Err().Error()
		case errors.Is(rerr, renewlock.ErrLeaseLost):
			a.lost, a.atRelease, a.why = true, true, rerr.Error()
		}
		rec.add(a)
	}
}

// foRelease releases l, and tries again for up to 3 s while the outcome is
// unknown (Redis unreachable in a failover), as an application should: a
// lease whose release never arrives blocks the lock for a whole TTL.
func foRelease(l *renewlock.Lock) error {
	deadline := time.Now().Add(3 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := l.Release(ctx)
		cancel()
		if err == nil || errors.Is(err, renewlock.ErrLeaseLost) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// analyze computes the report of one variant.
func analyze(rec *foRecorder, variant string, faultAt time.Time) foReport {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := foReport{variant: variant, firstAfter: -1, accepted: rec.accepted[variant], stale: rec.stale[variant]}
	var classes []string
	for class, n := range rec.acqErrs[variant] {
		r.errs += n
		classes = append(classes, fmt.Sprintf("%s %d", class, n))
	}
	sort.Strings(classes)
	r.errClasses = strings.Join(classes, ", ")
	if s := rec.errText[variant]; s != "" {
		r.errClasses += "; e.g. " + s
	}
	byKey := map[string][]*foAcq{}
	for _, a := range rec.acqs {
		if a.variant != variant {
			continue
		}
		r.acqs++
		byKey[a.key] = append(byKey[a.key], a)
		if a.lost {
			r.events = append(r.events, fmt.Sprintf("%s client %d token %d: held %v→%v, lost: %s%s",
				a.key, a.client, a.token, a.got.Sub(faultAt).Round(time.Millisecond), a.end.Sub(faultAt).Round(time.Millisecond), a.why,
				warningsBefore(rec.warnings[variant], a.end, faultAt)))
			r.losses++
			if a.atRelease {
				r.atRelease++
			}
			if a.end.After(faultAt) {
				r.learn = append(r.learn, a.end.Sub(faultAt))
			}
		}
		if a.got.After(faultAt) && (r.firstAfter < 0 || a.got.Sub(faultAt) < r.firstAfter) {
			r.firstAfter = a.got.Sub(faultAt)
		}
		if a.got.Before(faultAt) && a.end.After(faultAt) {
			r.held++
			if !a.lost {
				r.survived++
			}
		}
	}
	for key, acqs := range byKey {
		sort.Slice(acqs, func(i, j int) bool { return acqs[i].got.Before(acqs[j].got) })
		if os.Getenv("RENEWLOCK_FAILOVER_TRACE") != "" {
			for _, a := range acqs {
				r.events = append(r.events, fmt.Sprintf("%s client %d token %d: called %v got %v end %v lost %v",
					key, a.client, a.token, a.called.Sub(faultAt).Round(time.Millisecond), a.got.Sub(faultAt).Round(time.Millisecond),
					a.end.Sub(faultAt).Round(time.Millisecond), a.lost))
			}
		}
		for i, a := range acqs {
			for _, b := range acqs[i+1:] {
				if b.got.Before(a.end) {
					r.events = append(r.events, fmt.Sprintf("%s OVERLAP: client %d token %d held %v→%v, client %d token %d from %v",
						key, a.client, a.token, a.got.Sub(faultAt).Round(time.Millisecond), a.end.Sub(faultAt).Round(time.Millisecond),
						b.client, b.token, b.got.Sub(faultAt).Round(time.Millisecond)))
					r.overlaps++
					end := a.end
					if b.end.Before(end) {
						end = b.end
					}
					r.maxOverlap = max(r.maxOverlap, end.Sub(b.got))
					if !a.lost {
						r.untold++
					}
				}
				if a.got.Before(b.called) && a.token >= b.token {
					r.tokenViolations = append(r.tokenViolations, fmt.Sprintf("key %s: token %d (acquired %v after the fault) then %d (called %v after)",
						key, a.token, a.got.Sub(faultAt).Round(time.Millisecond), b.token, b.called.Sub(faultAt).Round(time.Millisecond)))
				}
				if a.token == b.token {
					r.tokenViolations = append(r.tokenViolations, fmt.Sprintf("key %s: token %d issued twice", key, a.token))
				}
			}
		}
	}
	return r
}

// warningsBefore returns, for a loss at end, the distinct renewal warnings
// logged in the TTL before it, with their times after the fault.
func warningsBefore(ws []foWarning, end, faultAt time.Time) string {
	var out []string
	seen := map[string]bool{}
	for _, w := range ws {
		if w.at.After(end) || w.at.Before(end.Add(-foTTL)) {
			continue
		}
		_, msg, _ := strings.Cut(w.text, " err=")
		if msg == "" || seen[msg] {
			continue
		}
		seen[msg] = true
		out = append(out, fmt.Sprintf("%v: %s", w.at.Sub(faultAt).Round(time.Millisecond), msg))
	}
	if len(out) == 0 {
		return ""
	}
	return "; renewals failed before: " + strings.Join(out, " | ")
}

// foSummary accumulates reports over rounds, per scenario and variant.
type foSummary struct {
	mu   sync.Mutex
	rows map[string][]foReport
	keys []string
}

var foResults = &foSummary{rows: map[string][]foReport{}}

func (s *foSummary) add(scenario string, reports []foReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range reports {
		k := scenario + " | " + r.variant
		if _, ok := s.rows[k]; !ok {
			s.keys = append(s.keys, k)
		}
		s.rows[k] = append(s.rows[k], r)
	}
}

// aggregate logs, per scenario and variant, the totals over all rounds.
func (s *foSummary) aggregate(t *testing.T, scenario string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if !strings.HasPrefix(k, scenario+" | ") {
			continue
		}
		rs := s.rows[k]
		var acqs, errs, losses, atRel, overlaps, withOverlap, untold, tokBad, acc, stale, held, kept int
		var maxOv time.Duration
		var learn, first []time.Duration
		for _, r := range rs {
			acqs += r.acqs
			errs += r.errs
			losses += r.losses
			atRel += r.atRelease
			overlaps += r.overlaps
			if r.overlaps > 0 {
				withOverlap++
			}
			untold += r.untold
			tokBad += len(r.tokenViolations)
			acc += r.accepted
			stale += r.stale
			held += r.held
			kept += r.survived
			maxOv = max(maxOv, r.maxOverlap)
			learn = append(learn, r.learn...)
			if r.firstAfter >= 0 {
				first = append(first, r.firstAfter)
			}
		}
		pct := func(d []time.Duration) string {
			if len(d) == 0 {
				return "–"
			}
			slices.Sort(d)
			return fmt.Sprintf("%v / %v / %v", d[0].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
		}
		t.Logf("SUMMARY %s: %d rounds | acq %d, errors %d | losses %d (%d at release), learned after fault min/p50/max %s | rounds with overlap %d, overlaps %d, max %v, never told %d | token violations %d | writes %d ok / %d stale refused | first acquisition after fault min/p50/max %s | held at fault %d, kept %d",
			k, len(rs), acqs, errs, losses, atRel, pct(learn), withOverlap, overlaps, maxOv.Round(time.Millisecond), untold, tokBad, acc, stale, pct(first), held, kept)
	}
}

// logReports logs a round's reports, and with -v its losses and overlaps.
func logReports(t *testing.T, round int, reports []foReport) {
	t.Helper()
	for _, r := range reports {
		t.Logf("round %d: %s", round+1, r)
		if testing.Verbose() {
			for _, e := range r.events {
				t.Logf("    %s: %s", r.variant, e)
			}
		}
	}
}

// settleDialers makes t wait, after all its other clean-ups (which close
// the go-redis clients), for go-redis's background dialers to notice: a
// pool that failed to dial a dead server retries every second until it is
// closed, and goleak (TestMain) would count a retry still sleeping.
func settleDialers(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			buf := make([]byte, 1<<20)
			if !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "pool.(*ConnPool).tryDial") {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
