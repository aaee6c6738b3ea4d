package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// ratio is a float that may be +Inf (JSON has no infinity: it is "inf").
type ratio float64

func (r ratio) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(r), 0) || math.IsNaN(float64(r)) {
		return []byte(`"inf"`), nil
	}
	return []byte(strconv.FormatFloat(float64(r), 'f', 3, 64)), nil
}

func (r *ratio) UnmarshalJSON(b []byte) error {
	if string(b) == `"inf"` {
		*r = ratio(inf)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("ratio: %w", err)
	}
	*r = ratio(f)
	return nil
}

func (r ratio) String() string {
	if math.IsInf(float64(r), 0) {
		return "∞"
	}
	return fmt.Sprintf("%.2f", float64(r))
}

// target is one goal of an issue (5: S1–S6, 12: S7), checked against this
// run.
type target struct {
	Issue     int     `json:"issue"`
	Scenario  string  `json:"scenario"`
	Goal      string  `json:"goal"`
	Renewlock string  `json:"renewlock"`
	Reference string  `json:"reference"`
	Ratio     float64 `json:"ratio"` // renewlock ÷ reference, in the goal's sense (≥1 is good)
	Met       bool    `json:"met"`
	NA        bool    `json:"not_applicable,omitempty"` // no reference to compare with in this run
}

// best returns the peer with the largest (or smallest) value of f.
func best[T any](m map[string]*T, peers []*libState, f func(*T) float64, largest bool) (string, float64) {
	name, v := "", math.NaN()
	for _, ls := range peers {
		r := m[ls.name]
		if r == nil || !ls.peer {
			continue
		}
		x := f(r)
		if math.IsNaN(v) || (largest && x > v) || (!largest && x < v) {
			name, v = ls.name, x
		}
	}
	return name, v
}

var allLibs []*libState

func evaluate(res *results) []target {
	var out []target
	addIssue := func(issue int, sc, goal, rl, ref string, ratio float64, met bool) {
		na := math.IsNaN(ratio) // the caller's sign for "no reference"
		if na || math.IsInf(ratio, 0) {
			ratio = 0 // JSON has no NaN or infinity
		}
		out = append(out, target{Issue: issue, Scenario: sc, Goal: goal, Renewlock: rl, Reference: ref,
			Ratio: math.Round(ratio*1000) / 1000, Met: met && !na, NA: na})
	}
	add := func(sc, goal, rl, ref string, ratio float64, met bool) {
		addIssue(5, sc, goal, rl, ref, ratio, met)
	}
	if res.S1 != nil && res.S1["renewlock"] != nil && res.S1["minimal"] != nil {
		r, m := res.S1["renewlock"].PairsPerSec, res.S1["minimal"].PairsPerSec
		add("S1", "pairs/s ≥ 0.95× minimal lock", f0(r), "minimal "+f0(m), r/m, r >= 0.95*m)
	}
	if res.S5 != nil && res.S5["renewlock"] != nil {
		rt := res.S5["renewlock"].RoundTrips
		add("S5", "exactly 2 round trips per uncontended pair", f2(rt), "2", 2/rt, math.Abs(rt-2) < 0.01)
	}
	if res.S2 != nil && res.S2["renewlock"] != nil {
		r := res.S2["renewlock"]
		n, v := best(res.S2, allLibs, func(p *pairRes) float64 { return p.PairsPerSec }, true)
		add("S2", "pairs/s ≥ best peer", f0(r.PairsPerSec), n+" "+f0(v), r.PairsPerSec/v, r.PairsPerSec >= v)
		if m := res.S2["minimal"]; m != nil {
			add("S2", "client CPU per pair ≤ minimal lock", f1(r.ClientCPUus)+" µs", "minimal "+f1(m.ClientCPUus)+" µs",
				m.ClientCPUus/r.ClientCPUus, r.ClientCPUus <= m.ClientCPUus)
		}
	}
	for _, hc := range []struct {
		name     string
		m        map[string]*contRes
		acqRatio float64
		fair     float64
	}{{"S3 hold 0", res.S3Hold0, 1, 1.2}, {"S3 hold 1ms", res.S3Hold1, 1.1, 1.3}} {
		r := hc.m["renewlock"]
		if r == nil {
			continue
		}
		n, v := best(hc.m, allLibs, func(c *contRes) float64 { return c.AcqPerSec }, true)
		add(hc.name, fmt.Sprintf("acq/s ≥ %.1f× best peer", hc.acqRatio), f0(r.AcqPerSec), n+" "+f0(v), r.AcqPerSec/(hc.acqRatio*v), r.AcqPerSec >= hc.acqRatio*v)
		if hc.acqRatio == 1 {
			n, v = best(hc.m, allLibs, func(c *contRes) float64 { return c.MaxWaitMs }, false)
			add(hc.name, "max wait ≤ 1/5 best peer", f1(r.MaxWaitMs)+" ms", n+" "+f1(v)+" ms", v/5/r.MaxWaitMs, r.MaxWaitMs <= v/5)
		} else {
			n, v = best(hc.m, allLibs, func(c *contRes) float64 { return c.Wait.P99 }, false)
			add(hc.name, "p99 wait ≤ 1/3 best peer", f1(r.Wait.P99)+" ms", n+" "+f1(v)+" ms", v/3/r.Wait.P99, r.Wait.P99 <= v/3)
		}
		add(hc.name, fmt.Sprintf("fairness (max/min per goroutine) ≤ %.1f", hc.fair), r.Fairness.String(), fmt.Sprint(hc.fair), hc.fair/float64(r.Fairness), float64(r.Fairness) <= hc.fair)
		add(hc.name, "0 exclusion violations", fmt.Sprint(r.Violations), "0", 1, r.Violations == 0)
	}
	for _, hc := range []struct {
		name string
		m    map[string]*handoffRes
	}{{"S4", res.S4}, {"S4 same client", res.S4Local}} {
		if hc.m == nil || hc.m["renewlock"] == nil {
			continue
		}
		h := hc.m["renewlock"].Handoff
		ping := res.PingS4
		add(hc.name, "p50 ≤ 5× bare PING (back-to-back PINGs between S4 rounds)", f2(h.P50)+" ms", "PING p50 "+f3(ping.P50)+" ms", 5*ping.P50/h.P50, h.P50 <= 5*ping.P50)
		if ip := res.IdlePing; ip.N > 0 {
			add(hc.name, "p50 ≤ 5× PING after the same idle time as a hand-off (informative)", f2(h.P50)+" ms", "idle PING p50 "+f3(ip.P50)+" ms", 5*ip.P50/h.P50, h.P50 <= 5*ip.P50)
		}
		add(hc.name, "p99 ≤ 1 ms", f2(h.P99)+" ms", "1 ms", 1/h.P99, h.P99 <= 1)
		pollers := []string{"minimal", "redislock-1ms"}
		bp, bv := "", math.Inf(1)
		for _, p := range pollers {
			if x := hc.m[p]; x != nil && x.Handoff.P50 < bv {
				bp, bv = p, x.Handoff.P50
			}
		}
		if bp != "" {
			add(hc.name, "p50 ≥ 5× faster than the best 1 ms poller", f2(h.P50)+" ms", bp+" "+f2(bv)+" ms", bv/5/h.P50, h.P50*5 <= bv)
		}
		if x := hc.m["redsync"]; x != nil {
			add(hc.name, "p50 ≥ 100× faster than redsync defaults", f2(h.P50)+" ms", "redsync "+f1(x.Handoff.P50)+" ms", x.Handoff.P50/100/h.P50, h.P50*100 <= x.Handoff.P50)
		}
	}
	if s := res.S6; s != nil {
		perInterval := s.RenewPerInterval
		add("S6", "renewals of a tick in one pipelined round trip (round trips per renew interval)", f2(perInterval), fmt.Sprintf("%d locks", s.Locks), 1/math.Max(perInterval, 1e-9), perInterval <= 3)
		add("S6", "each renew script ≤ ~1 ms of Redis time (median call; max in the table)", fmt.Sprintf("%.0f µs", s.RenewScript.P50), "1000 µs", 1000/math.Max(s.RenewScript.P50, 1), s.RenewScript.N > 0 && s.RenewScript.P50 <= 1000)
		add("S6", "< 1 KiB client heap per held lock", f0(s.HeapBytesPerLock)+" B", "1024 B", 1024/s.HeapBytesPerLock, s.HeapBytesPerLock < 1024)
		add("S6", "no goroutine per held lock", fmt.Sprintf("%.4f", s.GoroutinesPerLck), "0", 1, s.GoroutinesPerLck < 0.01)
		add("S6", "S1 p99 while renewing ≤ 1.5× S1 p99 alone", f3(s.S1During.P99)+" ms", "alone "+f3(s.S1Alone.P99)+" ms", 1.5*s.S1Alone.P99/s.S1During.P99, s.S1During.P99 <= 1.5*s.S1Alone.P99)
	}
	if res.S7 != nil {
		evaluateS7(res.S7, allLibs, addIssue)
	}
	return out
}

func f0(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }
func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
func f2(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
func f3(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

func writeMarkdown(w io.Writer, res *results, libs []*libState) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	m := res.Meta
	p("## Run\n\n%s · Go %s · GOMAXPROCS %d · %s · Redis %s (loopback) · %d rounds · %.0f s total\n\n",
		m.Date, m.GoVersion, m.GOMAXPROCS, m.CPU, m.Redis, m.Config.Rounds, m.Seconds)
	p("Bare PING round trip: p50 %.3f ms, p99 %.3f ms (n=%d)\n\n", res.Ping.P50, res.Ping.P99, res.Ping.N)
	if res.S1 != nil {
		p("### S1 serial: 1 goroutine, new key each time, acquire+release\n\n")
		p("| library | pairs/s | ×minimal | p50 ms | p99 ms | client CPU µs/pair | Redis CPU µs/pair | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		base := res.S1["minimal"]
		for _, ls := range libs {
			r := res.S1[ls.name]
			rel := "–"
			if base != nil && base.PairsPerSec > 0 {
				rel = f2(r.PairsPerSec / base.PairsPerSec)
			}
			p("| %s | %.0f | %s | %.3f | %.3f | %.1f | %.1f | %d |\n", ls.name, r.PairsPerSec, rel, r.Latency.P50, r.Latency.P99, r.ClientCPUus, r.RedisCPUus, r.Errors)
		}
		p("\n")
	}
	if res.S2 != nil {
		p("### S2 parallel: %d goroutines, distinct keys\n\n", m.Config.S2Workers)
		p("| library | pairs/s | ×minimal | p50 ms | p99 ms | client CPU µs/pair | Redis CPU µs/pair | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		base := res.S2["minimal"]
		for _, ls := range libs {
			r := res.S2[ls.name]
			rel := "–"
			if base != nil && base.PairsPerSec > 0 {
				rel = f2(r.PairsPerSec / base.PairsPerSec)
			}
			p("| %s | %.0f | %s | %.3f | %.3f | %.1f | %.1f | %d |\n", ls.name, r.PairsPerSec, rel, r.Latency.P50, r.Latency.P99, r.ClientCPUus, r.RedisCPUus, r.Errors)
		}
		p("\n")
	}
	for _, hc := range []struct {
		title string
		m     map[string]*contRes
	}{{"hold 0", res.S3Hold0}, {"hold 1 ms", res.S3Hold1}} {
		if hc.m == nil {
			continue
		}
		p("### S3 contention, %s: %d goroutines in 2 clients on one key\n\n", hc.title, m.Config.S3Workers)
		p("| library | acq/s | wait p50 ms | wait p99 ms | max wait ms | fairness max/min | violations | errors | mean hold ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, ls := range libs {
			r := hc.m[ls.name]
			p("| %s | %.0f | %.2f | %.1f | %.1f | %s | %d | %d | %.2f |\n", ls.name, r.AcqPerSec, r.Wait.P50, r.Wait.P99, r.MaxWaitMs, r.Fairness, r.Violations, r.Errors, r.MeanHoldMs)
		}
		p("\n")
	}
	for _, hc := range []struct {
		title string
		m     map[string]*handoffRes
	}{{"other client", res.S4}, {"same client", res.S4Local}} {
		if hc.m == nil {
			continue
		}
		p("### S4 hand-off: release → blocked waiter (%s) holds\n\n", hc.title)
		p("PING between S4 rounds, back to back: p50 %.3f ms, p99 %.3f ms; after 10–30 ms idle like a hand-off: p50 %.3f ms, p99 %.3f ms (n=%d)\n\n",
			res.PingS4.P50, res.PingS4.P99, res.IdlePing.P50, res.IdlePing.P99, res.IdlePing.N)
		p("| library | p50 ms | p99 ms | max ms | p50 ÷ PING p50 | p50 ÷ idle PING p50 | samples | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, ls := range libs {
			r := hc.m[ls.name]
			p("| %s | %.3f | %.3f | %.3f | %.1f | %.1f | %d | %d |\n", ls.name, r.Handoff.P50, r.Handoff.P99, r.Handoff.Max, r.Handoff.P50/res.PingS4.P50, r.Handoff.P50/res.IdlePing.P50, r.Handoff.N, r.Errors)
		}
		p("\n")
	}
	if res.S5 != nil {
		p("### S5 cost per uncontended acquire+release pair\n\n")
		p("| library | round trips | socket writes | commands sent | commands run in Redis (incl. inside scripts) | Redis time in scripts µs | Redis CPU µs | breakdown |\n|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, ls := range libs {
			r := res.S5[ls.name]
			var parts []string
			for k, v := range r.Commands {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
			}
			sortStrings(parts)
			p("| %s | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f | %s |\n", ls.name, r.RoundTrips, r.SocketWrites, r.Sent, r.AllCommands, r.ScriptUsec, r.RedisCPUus, strings.Join(parts, ", "))
		}
		p("\n")
	}
	if s := res.S6; s != nil {
		p("### S6 renewal at scale: one renewlock client holds %d locks (TTL %.0f s, renewed every %.1f s) for %.0f s\n\n", s.Locks, s.TTLSeconds, s.TTLSeconds/3, m.Config.S6.Seconds())
		p("| measure | value |\n|---|---:|\n")
		p("| acquire all %d locks (64 goroutines) | %.2f s |\n", s.Locks, s.AcquireSeconds)
		p("| renewal round trips over the %.1f s hold | %d (%.2f/s, %.2f per renew interval) |\n", s.HoldSeconds, s.RenewRoundTrips, s.RenewRoundTripsPerS, s.RenewPerInterval)
		p("| locks renewed per renewal round trip | %.0f |\n", s.LocksPerRenewRT)
		p("| all round trips/s while only renewing (%.1f s) | %.2f |\n", s.QuietSeconds, s.RoundTripsPerSec)
		p("| renew script calls/s | %.2f |\n", s.CommandsPerSec)
		p("| largest pipeline (script calls) | %d |\n", s.LargestPipeline)
		p("| locks renewed/s | %.0f |\n", s.RenewedPerSec)
		p("| Redis CPU while renewing | %.2f %% of a core |\n", s.RedisCPUPercent)
		p("| Redis µs per lock renewed | %.2f |\n", s.RedisUsecPerRenew)
		p("| client CPU while renewing | %.2f %% of a core |\n", s.ClientCPUPercent)
		p("| Redis time per renew script call, p50 / p99 / max (SLOWLOG, n=%d) | %.0f / %.0f / %.0f µs |\n", s.RenewScript.N, s.RenewScript.P50, s.RenewScript.P99, s.RenewScript.Max)
		p("| renew script calls answered NOSCRIPT (then resent as EVAL) | %d |\n", s.RenewNoscript)
		p("| commands over 1 ms while S1 runs: renew scripts / others | %d / %d |\n", s.BusyRenewOver1ms, s.BusyOtherOver1ms)
		p("| client heap per held lock | %.0f B |\n", s.HeapBytesPerLock)
		p("| goroutines per held lock | %.4f |\n", s.GoroutinesPerLck)
		p("| S1 alone p50 / p99 / p99.9 / max | %.3f / %.3f / %.3f / %.3f ms (n=%d) |\n", s.S1Alone.P50, s.S1Alone.P99, s.S1Alone.P999, s.S1Alone.Max, s.S1Alone.N)
		p("| S1 while renewing p50 / p99 / p99.9 / max | %.3f / %.3f / %.3f / %.3f ms (n=%d) |\n", s.S1During.P50, s.S1During.P99, s.S1During.P999, s.S1During.Max, s.S1During.N)
		p("| locks lost during the hold | %d |\n", s.LostLocks)
		p("| Close (release all, one pipeline) | %.3f s |\n\n", s.CloseSeconds)
	}
	if res.S1X != nil {
		writeAnatomy(p, res.S1X, res.S1XOrder, m.Config.Rounds, m.Config.S1X)
	}
	if res.S1XRedis != nil {
		writeScriptCosts(p, res.S1XRedis, res.S1XRedisO)
	}
	if res.S7 != nil {
		writeS7(p, res.S7, libs, m.Config.Rounds)
	}
	if res.RL != nil {
		writeRL(p, res.RL, m.Config)
	}
	if res.ACK != nil {
		writeACK(p, res.ACK, m.Config)
	}
	if res.S8 != nil {
		writeS8(p, res.S8, m.Config.Rounds)
	}
	if res.S9 != nil {
		writeS9(p, res.S9, m.Config.Rounds)
	}
	if res.S10 != nil {
		writeS10(p, res.S10, m.Config.Rounds)
	}
	for _, issue := range []struct {
		n     int
		title string
	}{{5, "issue 5"}, {12, "issue 12: contention at scale, S7"}} {
		first := true
		for _, t := range res.Targets {
			if t.Issue != issue.n {
				continue
			}
			if first {
				p("### Targets (%s)\n\n| scenario | goal | renewlock | reference | margin | met |\n|---|---|---:|---:|---:|:---:|\n", issue.title)
				first = false
			}
			mark := "no"
			switch {
			case t.NA:
				mark = "n/a"
			case t.Met:
				mark = "yes"
			}
			p("| %s | %s | %s | %s | %.2f | %s |\n", t.Scenario, t.Goal, t.Renewlock, t.Reference, t.Ratio, mark)
		}
		if !first {
			p("\nmargin: how far renewlock is from the goal's bound (≥ 1 means met); n/a: no reference in this run.\n\n")
		}
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
