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

var flagFamilyReport = flag.String("chaos.family-report", "", "also write the lock family's summary table (markdown) to this file")

// familyKinds are the keys of every family scenario, one of each kind: all
// three run at once in the same Clients and processes, so one fault hits a
// semaphore, a read-write lock and an election together (and their
// renewals share the Clients' batches).
var familyKinds = []string{"sem:2", "rw", "elect"}

// familyScenarios are the faults the family runs under (defined in
// scenarios_test.go).
var familyScenarios = []string{"redis-pause", "redis-restart", "partition", "client-pause", "client-crash", "latency-jitter", "oom"}

// TestChaosFamily runs the semaphore, the read-write lock and the election
// (each in-process client's first loop per key holds for 2×TTL, so leases
// ride through Redis faults and are lost by deadline, as in TestChaos; the
// second for TTL/2, so they change hands often)
// under the faults of familyScenarios and checks each kind's history
// (family.go). Its length per scenario is -chaos.duration, as TestChaos's.
func TestChaosFamily(t *testing.T) {
	ttl, dur := *flagTTL, duration(t)
	only := map[string]bool{}
	for _, n := range strings.Split(*flagOnly, ",") {
		if n != "" {
			only[n] = true
		}
	}
	resource := redistest.Start(t)
	resClient := resource.Client(func(o *redis.Options) { o.PoolSize = 32 })
	var rows []familyRow
	for _, sc := range scenarios {
		if !slices.Contains(familyScenarios, sc.name) || (len(only) > 0 && !only[sc.name]) {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			e := NewEnv(t, EnvConfig{
				Name: "family-" + sc.name, TTL: ttl, Keys: len(familyKinds), Kinds: familyKinds,
				InProc: 3, Loops: 2, Procs: 2,
				Hold: 2 * ttl, Hold2: ttl / 2, ProcHold: 4 * ttl / 10, ProcWork: 30 * time.Millisecond,
				WriteRatio: 0.3, ProcWriteRatio: 0.5,
				WorkerBin: workerBin, Resource: resClient,
			})
			e.Sleep(ttl / 2)
			cycles := 0
			for time.Since(start) < dur {
				sc.cycle(e, ttl)
				cycles++
			}
			h := e.Stop()
			kinds := make(map[string]kindSpec)
			for _, k := range e.Keys {
				kinds[k] = e.KindOf(k)
			}
			if dir := os.Getenv("CHAOS_DUMP_DIR"); dir != "" {
				// Every history, to look into by hand.
				if err := h.Dump(filepath.Join(dir, "family-"+sc.name+".json")); err != nil {
					t.Errorf("dump: %v", err)
				}
			}
			if dir := timelineDir(); dir != "" {
				files, err := h.WriteTimelines(dir, "family-"+sc.name, timelineFormats(t), TimelineOptions{
					Title: fmt.Sprintf("family %s: %s (TTL %v)", sc.name, sc.injected, ttl),
					TTL:   ttl,
				})
				if err != nil {
					t.Errorf("timeline: %v", err)
				}
				t.Logf("timeline: %s", strings.Join(files, ", "))
			}
			t.Log(familyHeader())
			for _, k := range e.Keys {
				res := h.Check(Limits{
					TTL: ttl, OverlapAllowed: sc.overlapAllowed,
					TakeoverSlack: 250 * time.Millisecond, CheckTimeout: max(30*time.Second, dur),
					Kinds: kinds, Keys: []string{k},
				})
				r := familyRow{sc: sc, kind: kinds[k], cycles: cycles, res: res, clients: fmt.Sprintf("%d+%d", len(e.Proxies), e.procSeq)}
				r.verdict = verdict(sc, res)
				rows = append(rows, r)
				t.Log(r.String())
				for _, s := range res.Starved {
					t.Logf("%s: late under CPU stall: %s", kinds[k], s)
				}
				for _, s := range res.GhostGrants {
					t.Logf("%s: takeover delayed by a grant to a dead waiter: %s", kinds[k], s)
				}
				for c, msgs := range res.Violations {
					for i, m := range msgs {
						if i == 10 {
							t.Errorf("%s (%s) … %d more", kinds[k], c, len(msgs)-10)
							break
						}
						t.Errorf("%s (%s) %s", kinds[k], c, m)
					}
				}
				if res.Acquisitions == 0 {
					t.Errorf("%s: no acquisitions at all: the workload did not run", kinds[k])
				}
			}
		})
	}
	table := familyHeader() + "\n" + "|" + strings.Repeat("---|", 16) + "\n"
	for _, r := range rows {
		table += r.String() + "\n"
	}
	fmt.Printf("\nchaos family summary (TTL %v, %v of faults per scenario):\n%s\n", ttl, dur, table)
	if *flagFamilyReport != "" {
		if err := os.WriteFile(*flagFamilyReport, []byte(table), 0o644); err != nil {
			t.Errorf("writing %s: %v", *flagFamilyReport, err)
		}
	}
}

// familyRow is one line of the family table: one kind under one scenario.
type familyRow struct {
	sc      scenario
	kind    kindSpec
	cycles  int
	clients string
	res     *Result
	verdict string
}

func familyHeader() string {
	return "| scenario | kind | cycles | clients (goroutine+process) | acquisitions | acquire errors | writes ok/rejected | of which reads ok/refused | losses | (a) overlaps (max) | (b) | (c) lead min/p50 | late losses | (d) takeover p50/p99 | (e) | verdict |"
}

func (r familyRow) String() string {
	// The columns shared with the mutex table, from row.String.
	base := row{sc: r.sc, clients: r.clients, cycles: r.cycles, res: r.res, verdict: r.verdict}
	cells := strings.Split(strings.Trim(base.String(), "| "), " | ")
	// row: scenario, injected, cycles, clients, acquisitions, errors, writes,
	// losses, overlaps, (b), lead, late, takeover, (e), starved, stall, warns, verdict
	res := r.res
	reads := "–"
	if res.Reads > 0 || r.kind.Kind == "rw" {
		reads = fmt.Sprintf("%d/%d", res.Reads-res.ReadsRejected, res.ReadsRejected)
	}
	verdict := r.verdict
	if res.StaleAccepted > 0 {
		verdict += fmt.Sprintf("; %d writes sent after the lease could have ended were accepted (own resource, no newer token)", res.StaleAccepted)
	}
	if len(res.GhostGrants) > 0 {
		verdict += fmt.Sprintf("; %d takeovers > TTL + 250ms, ≤ 2×TTL + 250ms: the room was granted to the victim's queued waiter", len(res.GhostGrants))
	}
	if len(res.Starved) > 0 {
		verdict += fmt.Sprintf("; %d late under CPU stall", len(res.Starved))
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |",
		cells[0], r.kind, cells[2], cells[3], cells[4], cells[5], cells[6], reads, cells[7], cells[8], cells[9], cells[10], cells[11], cells[12], cells[13], verdict)
}
