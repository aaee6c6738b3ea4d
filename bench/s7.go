package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// S7: many clients on one key (issue 12, contention at scale). N goroutines,
// each with a client of its own (its own go-redis or rueidis client, its own
// lock-library instance: for renewlock its own Client with its own
// subscription), as N processes of a fleet would be, loop acquire → hold →
// release on one key. Every (library, N, hold) runs once per round with new
// clients; opening, warming up and closing them is outside the measured
// window.

// s7Res is the outcome of S7 for one library, N and hold time, over all
// rounds.
type s7Res struct {
	Clients      int     `json:"clients"`
	HoldMs       float64 `json:"hold_ms"`
	Rounds       int     `json:"rounds"`
	Seconds      float64 `json:"seconds"`
	Acquisitions int     `json:"acquisitions"`
	AcqPerSec    float64 `json:"acq_per_sec"`
	// Wait is from calling acquire to holding. MaxWaitMs also counts waits
	// still running when a window ended (a lower bound for those).
	Wait      dist    `json:"wait"`
	MaxWaitMs float64 `json:"max_wait_ms"`
	// Fairness is the worst round's most acquisitions by one client ÷ the
	// fewest ("inf" if a client got none); Starved is the most clients
	// without any acquisition in one round, StarvedTotal the sum over rounds.
	Fairness        ratio   `json:"fairness_max_over_min_worst_round"`
	FairnessRounds  []ratio `json:"fairness_per_round"`
	PerClientRounds [][]int `json:"acquisitions_per_client_per_round"`
	Starved         int     `json:"starved_clients_worst_round"`
	StarvedTotal    int     `json:"starved_clients_all_rounds"`
	MeanPerClient   float64 `json:"mean_acquisitions_per_client_per_round"`
	// Cost per acquisition, from INFO taken at the start and the end of each
	// window: every command Redis ran (commandstats calls, including
	// commands run inside scripts, PUBLISH, SUBSCRIBE...), Redis CPU
	// (used_cpu_sys + used_cpu_user: includes the event loop and network
	// work), socket writes of all the clients, and this process's CPU.
	CmdsPerAcq     float64            `json:"redis_commands_per_acq"`
	CmdBreakdown   map[string]float64 `json:"redis_commands_per_acq_by_command"`
	RedisCPUPerAcq float64            `json:"redis_cpu_us_per_acq"`
	WritesPerAcq   float64            `json:"client_socket_writes_per_acq"`
	ClientCPUPerAc float64            `json:"client_cpu_us_per_acq"`
	Violations     int64              `json:"exclusion_violations"`
	Timeouts       int                `json:"acquire_timeouts"`
	Errors         int                `json:"errors"`
	MeanHoldMs     float64            `json:"mean_hold_ms"`

	waits     []time.Duration
	holdSum   time.Duration
	cmds      map[string]int64
	redisCPU  float64
	writes    int64
	clientCPU time.Duration
}

func (r *s7Res) finish() {
	r.Wait = summarize(r.waits)
	r.MaxWaitMs = max(r.MaxWaitMs, r.Wait.Max)
	r.Rounds = len(r.PerClientRounds)
	if r.Seconds > 0 {
		r.AcqPerSec = float64(r.Acquisitions) / r.Seconds
	}
	if r.Rounds > 0 && r.Clients > 0 {
		r.MeanPerClient = float64(r.Acquisitions) / float64(r.Rounds*r.Clients)
	}
	r.FairnessRounds = nil
	r.Fairness, r.Starved, r.StarvedTotal = 0, 0, 0
	for _, counts := range r.PerClientRounds {
		f, starved := fairness(counts)
		r.FairnessRounds = append(r.FairnessRounds, f)
		r.Fairness = max(r.Fairness, f)
		r.Starved = max(r.Starved, starved)
		r.StarvedTotal += starved
	}
	r.CmdBreakdown = make(map[string]float64)
	if r.Acquisitions > 0 {
		a := float64(r.Acquisitions)
		var all int64
		for k, v := range r.cmds {
			r.CmdBreakdown[k] = float64(v) / a
			all += v
		}
		r.CmdsPerAcq = float64(all) / a
		r.RedisCPUPerAcq = r.redisCPU * 1e6 / a
		r.WritesPerAcq = float64(r.writes) / a
		r.ClientCPUPerAc = float64(r.clientCPU.Microseconds()) / a
		r.MeanHoldMs = ms(r.holdSum / time.Duration(r.Acquisitions))
	} else {
		r.CmdsPerAcq, r.RedisCPUPerAcq, r.WritesPerAcq, r.ClientCPUPerAc = inf, inf, inf, inf
	}
}

// fairness returns max/min of counts (+Inf if some are 0 and some are not)
// and how many are 0.
func fairness(counts []int) (ratio, int) {
	lo, hi, zero := -1, 0, 0
	for _, n := range counts {
		if n == 0 {
			zero++
		}
		if lo < 0 || n < lo {
			lo = n
		}
		hi = max(hi, n)
	}
	switch {
	case lo > 0:
		return ratio(float64(hi) / float64(lo)), zero
	case hi > 0:
		return ratio(inf), zero
	}
	return ratio(inf), zero // nobody acquired anything
}

// s7Key identifies one cell of S7.
type s7Key struct {
	clients int
	hold    time.Duration
}

// s7Out is S7 in the JSON document: per hold time ("0s", "1ms"), per N, per
// library.
type s7Out struct {
	Window   string                                  `json:"window_per_round"`
	Warmup   string                                  `json:"contended_warmup_per_round"`
	Timeout  string                                  `json:"acquire_timeout"`
	Clients  []int                                   `json:"clients"`
	Holds    []string                                `json:"holds"`
	Results  map[string]map[string]map[string]*s7Res `json:"results"` // hold → N → library
	Note     string                                  `json:"note"`
	BySetup  map[s7Key]map[string]*s7Res             `json:"-"`
	holdList []time.Duration
}

// holdName is "0" or a duration such as "1ms".
func holdName(h time.Duration) string {
	if h == 0 {
		return "0"
	}
	return h.String()
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "0" {
			out = append(out, 0)
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad duration %q in %q", f, s)
		}
		out = append(out, d)
	}
	return out, nil
}

// manyClients runs all of S7: every round, every N and hold, libraries in a
// rotating order.
func (b *bench) manyClients(order func(int) []*libState) (*s7Out, error) {
	cfg := b.cfg
	ns, err := parseInts(cfg.S7Clients)
	if err != nil {
		return nil, fmt.Errorf("-s7-clients: %w", err)
	}
	holds, err := parseDurations(cfg.S7Holds)
	if err != nil {
		return nil, fmt.Errorf("-s7-holds: %w", err)
	}
	out := &s7Out{
		Window: cfg.S7.String(), Warmup: cfg.S7Warmup.String(), Timeout: cfg.S7Timeout.String(),
		Clients: ns, Results: map[string]map[string]map[string]*s7Res{},
		BySetup: map[s7Key]map[string]*s7Res{}, holdList: holds,
		Note: "one goroutine per client, each with its own Redis client and lock instance; fairness is the worst round's max/min acquisitions per client",
	}
	for _, h := range holds {
		out.Holds = append(out.Holds, holdName(h))
		out.Results[holdName(h)] = map[string]map[string]*s7Res{}
		for _, n := range ns {
			m := map[string]*s7Res{}
			for _, ls := range b.libs {
				m[ls.name] = &s7Res{Clients: n, HoldMs: ms(h), cmds: map[string]int64{}}
			}
			out.Results[holdName(h)][strconv.Itoa(n)] = m
			out.BySetup[s7Key{n, h}] = m
		}
	}
	for r := 0; r < cfg.Rounds; r++ {
		for _, n := range ns {
			for _, h := range holds {
				for _, ls := range order(r) {
					logf("S7 round %d %s N=%d hold %s", r+1, ls.name, n, holdName(h))
					key := fmt.Sprintf("s7:%d:%d:%d", r, n, h.Microseconds())
					if err := b.manyClientsOnce(ls, key, n, h, out.BySetup[s7Key{n, h}][ls.name]); err != nil {
						return nil, fmt.Errorf("S7 %s N=%d hold %v: %w", ls.name, n, h, err)
					}
				}
			}
		}
	}
	for _, m := range out.BySetup {
		for _, r := range m {
			r.finish()
		}
	}
	return out, nil
}

// manyClientsOnce runs one window of S7 for one library with n new clients,
// and adds its outcome to res.
func (b *bench) manyClientsOnce(ls *libState, key string, n int, hold time.Duration, res *s7Res) error {
	cfg := b.cfg
	ctr := &counters{}
	insts := make([]instance, n)
	defer func() {
		// Close in parallel: a renewlock Client's Close waits for its
		// goroutines, and 128 in a row add up.
		var wg sync.WaitGroup
		for _, in := range insts {
			if in != nil {
				wg.Add(1)
				go func() { defer wg.Done(); in.close() }()
			}
		}
		wg.Wait()
	}()
	for i := range insts {
		in, err := ls.open(b.addr, ctr)
		if err != nil {
			return err
		}
		insts[i] = in
	}

	// Warm-up, outside the window: each client takes a key of its own once
	// (connections, script cache), then all contend on the measured key for
	// a moment (renewlock's subscription connection, rueidis's tracking).
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			h, err := in.acquire(ctx, fmt.Sprintf("%s:warm:%d", key, i))
			if err == nil {
				err = h.release(ctx)
			}
			if err != nil {
				errs <- fmt.Errorf("warm-up: %w", err)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	if cfg.S7Warmup > 0 {
		wctx, wcancel := context.WithTimeout(context.Background(), cfg.S7Warmup)
		for _, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for wctx.Err() == nil {
					h, err := in.acquire(wctx, key)
					if err != nil {
						continue
					}
					rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
					_ = h.release(rctx)
					rcancel()
				}
			}()
		}
		wg.Wait()
		wcancel()
		time.Sleep(20 * time.Millisecond) // let give-ups and unsubscriptions land
	}

	// The window.
	var inside atomic.Int64
	var mu sync.Mutex
	counts := make([]int, n)
	start := make(chan struct{})
	win, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	for i, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var waits []time.Duration
			var holdSum, censored time.Duration
			got, errs, timeouts := 0, 0, 0
			var viol int64
			for win.Err() == nil {
				// The attempt's ctx ends after S7Timeout, or when the window
				// ends while still waiting; not once held (rueidislock's
				// lock lives as long as this ctx).
				actx, acancel := context.WithTimeout(context.Background(), cfg.S7Timeout)
				stop := context.AfterFunc(win, acancel)
				w0 := time.Now()
				h, err := in.acquire(actx, key)
				stop()
				if err != nil {
					timedOut := actx.Err() == context.DeadlineExceeded
					acancel()
					switch {
					case win.Err() != nil:
						censored = time.Since(w0)
					case timedOut:
						timeouts++
					default:
						errs++
						time.Sleep(time.Millisecond) // no hot loop on a persistent error
					}
					continue
				}
				if win.Err() != nil {
					// Held only after the window ended: not counted.
					rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
					_ = h.release(rctx)
					rcancel()
					acancel()
					break
				}
				waits = append(waits, time.Since(w0))
				got++
				h0 := time.Now()
				if inside.Add(1) != 1 {
					viol++
				}
				if hold > 0 {
					time.Sleep(hold)
				}
				inside.Add(-1)
				holdSum += time.Since(h0)
				rctx, rcancel := context.WithTimeout(context.Background(), opTimeout)
				if err := h.release(rctx); err != nil {
					errs++
				}
				rcancel()
				acancel()
			}
			mu.Lock()
			res.waits = append(res.waits, waits...)
			res.Acquisitions += got
			counts[i] = got
			res.Errors += errs
			res.Timeouts += timeouts
			res.Violations += viol
			res.holdSum += holdSum
			res.MaxWaitMs = max(res.MaxWaitMs, ms(censored))
			mu.Unlock()
		}()
	}
	ctx := context.Background()
	s0, err := snapshot(ctx, b.admin)
	if err != nil {
		return err
	}
	c0 := ctr.snap()
	cpu0 := cpuTime()
	t0 := time.Now()
	close(start)
	time.Sleep(cfg.S7)
	// The end of the window: read the counters before the clients wind
	// down, so that giving up and closing are not counted.
	wcancel()
	el := time.Since(t0)
	cpu1 := cpuTime()
	c1 := ctr.snap()
	s1, err := snapshot(ctx, b.admin)
	if err != nil {
		return err
	}
	wg.Wait()

	res.Seconds += el.Seconds()
	res.PerClientRounds = append(res.PerClientRounds, counts)
	for k, v := range cmdDelta(s0, s1) {
		res.cmds[k] += v
	}
	res.redisCPU += s1.cpu - s0.cpu
	res.writes += c1.writes - c0.writes
	res.clientCPU += cpu1 - cpu0
	return nil
}

// cell formats one S7 table cell: acq/s · fairness · cmds/acq · CPU µs/acq.
func (r *s7Res) cell() string {
	if r == nil {
		return "–"
	}
	fair := r.Fairness.String()
	if r.Starved > 0 {
		fair += fmt.Sprintf(" (%d/%d none)", r.Starved, r.Clients)
	}
	return fmt.Sprintf("%.0f · %s · %s · %s", r.AcqPerSec, fair, fnum(r.CmdsPerAcq, 1), fnum(r.RedisCPUPerAcq, 0))
}

func fnum(x float64, prec int) string {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return "∞"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

// roughlyFair is the S7 bound on fairness for "roughly fair" peers.
const roughlyFair = 2

// s7Best returns the peer with the most acquisitions/s in m, and the one
// among those with fairness ≤ roughlyFair and no starved client.
func s7Best(m map[string]*s7Res, libs []*libState) (best, fair string) {
	for _, ls := range libs {
		r := m[ls.name]
		if !ls.peer || r == nil {
			continue
		}
		if best == "" || r.AcqPerSec > m[best].AcqPerSec {
			best = ls.name
		}
		if r.Starved == 0 && float64(r.Fairness) <= roughlyFair && (fair == "" || r.AcqPerSec > m[fair].AcqPerSec) {
			fair = ls.name
		}
	}
	return best, fair
}

func writeS7(p func(string, ...any), s *s7Out, libs []*libState, rounds int) {
	hdr := func(first string) {
		p("| %s |", first)
		for _, n := range s.Clients {
			p(" N=%d |", n)
		}
		p("\n|---|")
		for range s.Clients {
			p("---:|")
		}
		p("\n")
	}
	for _, h := range s.holdList {
		p("### S7 many clients on one key, hold %s: acq/s · fairness · Redis cmds/acq · Redis CPU µs/acq\n\n", holdName(h))
		p("One goroutine per client, each with its own Redis client and lock instance; %v window per round, %d rounds. "+
			"Fairness: worst round's max/min acquisitions per client (∞: some client got none; \"k/N none\": the most clients without any in one round). "+
			"Commands: every command Redis ran (INFO commandstats, including those inside scripts); CPU: Redis used_cpu_sys+user.\n\n", s.Window, rounds)
		hdr("library")
		for _, ls := range libs {
			p("| %s |", ls.name)
			for _, n := range s.Clients {
				p(" %s |", s.BySetup[s7Key{n, h}][ls.name].cell())
			}
			p("\n")
		}
		p("\n")
		p("Wait (acquire call → holding), hold %s: p50 / p99 / max ms (max includes waits cut off by the end of a window)\n\n", holdName(h))
		hdr("library")
		for _, ls := range libs {
			p("| %s |", ls.name)
			for _, n := range s.Clients {
				r := s.BySetup[s7Key{n, h}][ls.name]
				p(" %.2f / %.1f / %.0f |", r.Wait.P50, r.Wait.P99, r.MaxWaitMs)
			}
			p("\n")
		}
		p("\n")
		p("Details, hold %s: acquisitions per client per round (mean) · socket writes/acq · client CPU µs/acq · violations · timeouts · errors\n\n", holdName(h))
		hdr("library")
		for _, ls := range libs {
			p("| %s |", ls.name)
			for _, n := range s.Clients {
				r := s.BySetup[s7Key{n, h}][ls.name]
				p(" %.1f · %s · %s · %d · %d · %d |", r.MeanPerClient, fnum(r.WritesPerAcq, 1), fnum(r.ClientCPUPerAc, 0), r.Violations, r.Timeouts, r.Errors)
			}
			p("\n")
		}
		p("\n")
		if !slices.ContainsFunc(libs, func(ls *libState) bool { return ls.name == "renewlock" }) {
			continue
		}
		p("renewlock against the peers, hold %s (acq/s ratio; roughly fair: fairness ≤ %d, nobody starved)\n\n", holdName(h), roughlyFair)
		hdr("")
		row := func(label string, f func(m map[string]*s7Res) string) {
			p("| %s |", label)
			for _, n := range s.Clients {
				p(" %s |", f(s.BySetup[s7Key{n, h}]))
			}
			p("\n")
		}
		row("best peer", func(m map[string]*s7Res) string {
			b, _ := s7Best(m, libs)
			if b == "" {
				return "–"
			}
			return fmt.Sprintf("%s %.0f", b, m[b].AcqPerSec)
		})
		row("renewlock ÷ best peer", func(m map[string]*s7Res) string {
			b, _ := s7Best(m, libs)
			if b == "" {
				return "–"
			}
			return f2(m["renewlock"].AcqPerSec / m[b].AcqPerSec)
		})
		row("best roughly fair peer", func(m map[string]*s7Res) string {
			_, f := s7Best(m, libs)
			if f == "" {
				return "none"
			}
			return fmt.Sprintf("%s %.0f (%s)", f, m[f].AcqPerSec, m[f].Fairness)
		})
		row("renewlock ÷ best roughly fair peer", func(m map[string]*s7Res) string {
			_, f := s7Best(m, libs)
			if f == "" {
				return "–"
			}
			return f2(m["renewlock"].AcqPerSec / m[f].AcqPerSec)
		})
		p("\n")
	}
}

// evaluateS7 checks renewlock against the targets of issue 12.
func evaluateS7(s *s7Out, libs []*libState, add func(issue int, sc, goal, rl, ref string, ratio float64, met bool)) {
	const issue = 12
	get := func(n int, h time.Duration) *s7Res {
		if m := s.BySetup[s7Key{n, h}]; m != nil {
			return m["renewlock"]
		}
		return nil
	}
	has := func(n int) bool { return slices.Contains(s.Clients, n) }
	for _, h := range s.holdList {
		sc := "S7 hold " + holdName(h)
		if lo, hi := get(2, h), get(128, h); lo != nil && hi != nil && has(2) && has(128) {
			add(issue, sc, "Redis commands per acquisition at N=128 ≤ 1.5× N=2", f1(hi.CmdsPerAcq), "N=2 "+f1(lo.CmdsPerAcq),
				1.5*lo.CmdsPerAcq/hi.CmdsPerAcq, hi.CmdsPerAcq <= 1.5*lo.CmdsPerAcq)
			add(issue, sc, "Redis CPU per acquisition at N=128 ≤ 1.5× N=2", f1(hi.RedisCPUPerAcq)+" µs", "N=2 "+f1(lo.RedisCPUPerAcq)+" µs",
				1.5*lo.RedisCPUPerAcq/hi.RedisCPUPerAcq, hi.RedisCPUPerAcq <= 1.5*lo.RedisCPUPerAcq)
		}
		for _, n := range s.Clients {
			r := get(n, h)
			if r == nil {
				continue
			}
			add(issue, sc, fmt.Sprintf("N=%d: fairness ≤ 1.3, no client starved", n), fmt.Sprintf("%s, %d starved", r.Fairness, r.StarvedTotal), "1.3",
				1.3/float64(r.Fairness), float64(r.Fairness) <= 1.3 && r.StarvedTotal == 0)
			add(issue, sc, fmt.Sprintf("N=%d: 0 exclusion violations", n), fmt.Sprint(r.Violations), "0", 1, r.Violations == 0)
		}
		for _, n := range []int{64, 128} {
			m := s.BySetup[s7Key{n, h}]
			r := get(n, h)
			if r == nil {
				continue
			}
			best, fair := s7Best(m, libs)
			switch {
			case h == time.Millisecond && best != "":
				v := m[best].AcqPerSec
				add(issue, sc, fmt.Sprintf("N=%d: acq/s ≥ best peer", n), f0(r.AcqPerSec), best+" "+f0(v), r.AcqPerSec/v, r.AcqPerSec >= v)
			case h == 0 && n == 64:
				if fair == "" {
					// No reference: say which peer came closest.
					fairest := ""
					for _, ls := range libs {
						if x := m[ls.name]; ls.peer && x != nil && (fairest == "" || x.Fairness < m[fairest].Fairness) {
							fairest = ls.name
						}
					}
					ref := "no peer had fairness ≤ 2 with nobody starved"
					if fairest != "" {
						ref += fmt.Sprintf(" (fairest: %s %s, %.0f acq/s)", fairest, m[fairest].Fairness, m[fairest].AcqPerSec)
					}
					add(issue, sc, "N=64: acq/s ≥ 1.5× best roughly fair peer (fairness ≤ 2)", f0(r.AcqPerSec), ref, math.NaN(), false)
					continue
				}
				v := m[fair].AcqPerSec
				add(issue, sc, "N=64: acq/s ≥ 1.5× best roughly fair peer (fairness ≤ 2)", f0(r.AcqPerSec), fair+" "+f0(v), r.AcqPerSec/(1.5*v), r.AcqPerSec >= 1.5*v)
			}
		}
	}
}
