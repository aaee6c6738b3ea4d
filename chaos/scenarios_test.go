package chaos

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redistest"
)

var (
	flagDuration = flag.Duration("chaos.duration", 0, "how long each scenario injects faults (default 8s; or $CHAOS_DURATION)")
	flagTTL      = flag.Duration("chaos.ttl", time.Second, "lock TTL used by the scenarios")
	flagReport   = flag.String("chaos.report", "", "also write the summary table (markdown) to this file")
	flagOnly     = flag.String("chaos.only", "", "comma-separated scenario names to run (default all)")
	flagTimeline = flag.String("chaos.timeline", "", "write each scenario's timeline chart (SVG) to this directory (or $CHAOS_TIMELINE_DIR; $CHAOS_TIMELINE_FORMAT=svg,png for PNG too)")
)

// timelineDir is where timeline charts go ("" for none).
func timelineDir() string {
	if *flagTimeline != "" {
		return *flagTimeline
	}
	return os.Getenv("CHAOS_TIMELINE_DIR")
}

// timelineFormats are the timeline files' formats: svg by default.
func timelineFormats(t *testing.T) []string {
	s := os.Getenv("CHAOS_TIMELINE_FORMAT")
	if s == "" {
		return []string{"svg"}
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(strings.ToLower(f)); f {
		case "svg", "png":
			out = append(out, f)
		default:
			t.Fatalf("CHAOS_TIMELINE_FORMAT=%q: %q is neither svg nor png", s, f)
		}
	}
	return out
}

func duration(t *testing.T) time.Duration {
	if *flagDuration > 0 {
		return *flagDuration
	}
	if s := os.Getenv("CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CHAOS_DURATION=%q: %v", s, err)
		}
		return d
	}
	return 8 * time.Second
}

// scenario is one fault, injected in cycles while the workload runs.
type scenario struct {
	name     string
	injected string
	// overlapAllowed: DESIGN.md "Limits" say two holders may both believe
	// they hold the lock under this fault.
	overlapAllowed bool
	cycle          func(e *Env, ttl time.Duration)
}

var scenarios = []scenario{
	{name: "redis-pause", injected: "SIGSTOP redis-server for 2×TTL, then SIGCONT",
		cycle: func(e *Env, ttl time.Duration) { e.PauseRedis(2 * ttl); e.Sleep(2 * ttl) }},
	{name: "redis-restart", injected: "SIGKILL redis-server mid-lease, restart empty at once", overlapAllowed: true,
		cycle: func(e *Env, ttl time.Duration) { e.Sleep(ttl / 2); e.RestartRedis(0); e.Sleep(2 * ttl) }},
	{name: "redis-delayed-restart", injected: "SIGKILL redis-server mid-lease, restart empty after 1×TTL",
		cycle: func(e *Env, ttl time.Duration) { e.Sleep(ttl / 2); e.RestartRedis(ttl); e.Sleep(2 * ttl) }},
	{name: "latency-jitter", injected: "replies to all in-process clients delayed 0.6×TTL ± 0.5×TTL for 2×TTL",
		cycle: func(e *Env, ttl time.Duration) { e.Latency(e.all(), 6*ttl/10, ttl/2, 2*ttl); e.Sleep(2 * ttl) }},
	{name: "bandwidth", injected: "all in-process clients cut to 1 KB/s each way for 2×TTL",
		cycle: func(e *Env, ttl time.Duration) { e.Bandwidth(e.all(), 1, 2*ttl); e.Sleep(2 * ttl) }},
	{name: "partition", injected: "black hole between one holding client and Redis for 2×TTL",
		cycle: func(e *Env, ttl time.Duration) { e.Partition(e.HoldingClient(5*time.Second), 2*ttl); e.Sleep(2 * ttl) }},
	{name: "client-pause", injected: "SIGSTOP a holder process mid-write for 2×TTL, then SIGCONT", overlapAllowed: true,
		cycle: func(e *Env, ttl time.Duration) { e.StopProc(2 * ttl); e.Sleep(2 * ttl) }},
	{name: "client-crash", injected: "SIGKILL a holder process mid-write, start a new one",
		cycle: func(e *Env, ttl time.Duration) { e.KillProc(); e.Sleep(2 * ttl) }},
	{name: "script-flush", injected: "SCRIPT FLUSH every TTL/2, 4 times",
		cycle: func(e *Env, ttl time.Duration) {
			for range 4 {
				e.ScriptFlush()
				e.Sleep(ttl / 2)
			}
		}},
	{name: "client-kill", injected: "CLIENT KILL of every lock connection (pub/sub too) every TTL/2, 4 times",
		cycle: func(e *Env, ttl time.Duration) {
			for range 4 {
				e.KillLockConns()
				e.Sleep(ttl / 2)
			}
		}},
	{name: "oom", injected: "maxmemory 1 byte + noeviction for 2×TTL",
		cycle: func(e *Env, ttl time.Duration) { e.OOM(2 * ttl); e.Sleep(2 * ttl) }},
	{name: "maxclients", injected: "maxclients 1 + CLIENT KILL of lock connections for 2×TTL",
		cycle: func(e *Env, ttl time.Duration) { e.MaxClients(2 * ttl); e.Sleep(2 * ttl) }},
}

// all returns the indexes of every in-process client.
func (e *Env) all() []int {
	out := make([]int, len(e.Proxies))
	for i := range out {
		out[i] = i
	}
	return out
}

// row is one line of the summary table.
type row struct {
	sc       scenario
	clients  string
	cycles   int
	res      *Result
	warns    int64
	verdict  string
	duration time.Duration
}

func TestChaos(t *testing.T) {
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
	for _, sc := range scenarios {
		if len(only) > 0 && !only[sc.name] {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			e := NewEnv(t, EnvConfig{
				Name: sc.name, TTL: ttl, Keys: 4, InProc: 3, Loops: 2, Procs: 2,
				Hold: 2 * ttl, ProcHold: 4 * ttl / 10,
				ProcWork:  30 * time.Millisecond,
				WorkerBin: workerBin, Resource: resClient,
			})
			e.Sleep(ttl / 2)
			cycles := 0
			for time.Since(start) < dur {
				sc.cycle(e, ttl)
				cycles++
			}
			h := e.Stop()
			res := h.Check(Limits{
				TTL: ttl, OverlapAllowed: sc.overlapAllowed,
				TakeoverSlack: 250 * time.Millisecond, CheckTimeout: max(30*time.Second, dur),
			})
			r := row{sc: sc, clients: fmt.Sprintf("%d+%d", len(e.Proxies), e.procSeq), cycles: cycles,
				res: res, warns: e.Warns.Load(), duration: time.Since(start)}
			r.verdict = verdict(sc, res)
			rows = append(rows, r)
			if dir := os.Getenv("CHAOS_DUMP_DIR"); dir != "" {
				// Every history, to look into by hand.
				if err := h.Dump(filepath.Join(dir, sc.name+".json")); err != nil {
					t.Errorf("dump: %v", err)
				}
			}
			if dir := timelineDir(); dir != "" {
				files, err := h.WriteTimelines(dir, sc.name, timelineFormats(t), TimelineOptions{
					Title:    fmt.Sprintf("%s: %s (TTL %v)", sc.name, sc.injected, ttl),
					Subtitle: fmt.Sprintf("fault cycles: %d · acquisitions: %d · losses: %d · verdict: %s", cycles, res.Acquisitions, res.Losses, r.verdict),
					TTL:      ttl,
				})
				if err != nil {
					t.Errorf("timeline: %v", err)
				}
				t.Logf("timeline: %s", strings.Join(files, ", "))
			}
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
	table := header() + "\n" + headerRule() + "\n"
	for _, r := range rows {
		table += r.String() + "\n"
	}
	fmt.Printf("\nchaos summary (TTL %v, %v of faults per scenario):\n%s\n", ttl, dur, table)
	if *flagReport != "" {
		if err := os.WriteFile(*flagReport, []byte(table), 0o644); err != nil {
			t.Errorf("writing %s: %v", *flagReport, err)
		}
	}
}

func verdict(sc scenario, r *Result) string {
	switch {
	case len(r.Violations) > 0:
		return "FAIL: " + r.Summary()
	case r.Overlaps > 0 && (sc.overlapAllowed || r.StarvedOverlaps < r.Overlaps):
		return fmt.Sprintf("safe with fencing only (overlap ≤ %v)", r.MaxOverlap.Round(time.Millisecond))
	case r.Overlaps > 0:
		return fmt.Sprintf("safe; exclusion broken only by CPU starvation, fencing held (overlap ≤ %v)", r.MaxOverlap.Round(time.Millisecond))
	default:
		return "safe"
	}
}

func header() string {
	return "| scenario | injected | cycles | clients (goroutine+process) | acquisitions | acquire errors | writes ok/rejected | losses | (a) overlaps (max) | (b) | (c) lead min/p50 | late losses | (d) takeover p50/p99 | (e) | late under CPU stall | max stall | renew warnings | verdict |"
}

func headerRule() string {
	return "|" + strings.Repeat("---|", 18)
}

func (r row) String() string {
	res := r.res
	errs := "0"
	if len(res.AcquireErrors) > 0 {
		var parts []string
		for c, n := range res.AcquireErrors {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
		slices.Sort(parts)
		errs = strings.Join(parts, ", ")
	}
	lead := "–"
	if len(res.Leads) > 0 {
		lead = fmt.Sprintf("%v / %v", ms(pct(res.Leads, 0)), ms(pct(res.Leads, 50)))
	}
	take := "–"
	if len(res.Takeovers) > 0 {
		take = fmt.Sprintf("%v / %v", ms(pct(res.Takeovers, 50)), ms(pct(res.Takeovers, 99)))
	}
	ov := fmt.Sprintf("%d", res.Overlaps)
	if res.Overlaps > 0 {
		ov = fmt.Sprintf("%d (%v)", res.Overlaps, ms(res.MaxOverlap))
	}
	late := fmt.Sprintf("%d", len(res.LateLosses))
	if len(res.LateLosses) > 0 {
		late = fmt.Sprintf("%d (%s)", len(res.LateLosses), res.LateLosses[0])
	}
	losses := fmt.Sprintf("%d", res.Losses)
	if res.LostAtRelease > 0 {
		losses = fmt.Sprintf("%d (%d at release)", res.Losses, res.LostAtRelease)
	}
	starved := fmt.Sprintf("%d", len(res.Starved))
	if res.StarvedOverlaps > 0 {
		starved += fmt.Sprintf(" (%d overlaps)", res.StarvedOverlaps)
	}
	return fmt.Sprintf("| %s | %s | %d | %s | %d | %s | %d/%d | %s | %s | %d | %s | %s | %s | %d | %s | %v | %d | %s |",
		r.sc.name, r.sc.injected, r.cycles, r.clients, res.Acquisitions, errs, res.Accepted, res.Rejected, losses,
		ov, len(res.Violations["b"]), lead, late, take, len(res.Violations["e"]), starved, ms(res.MaxStall), r.warns, r.verdict)
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// pct returns the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)]
}
