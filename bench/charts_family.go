package main

// Charts of the lock family's scenarios (S8 election, S9 semaphore, S10
// read-write lock): waits and hand-offs as percentile plots, and S8's Redis
// load while idle against the number of waiting candidates.

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

func init() {
	// S9 and S10 name their variants; they take their family's look.
	libStyles["renewlock-rw"] = libStyles["renewlock"]
	m := libStyles["renewlock"]
	m.dashed, m.width = true, 2
	libStyles["renewlock-mutex"] = m
	// A semaphore of L mutex keys: its family's colour, a heavier line.
	for name, base := range map[string]string{"redislock×L": "redislock-1ms", "rueidislock×L": "rueidislock-1key"} {
		st := libStyles[base]
		st.dashed, st.width = false, 2.4
		libStyles[name] = st
	}
}

// familyFigure: S8 hand-offs, S9 waits, S10 read and write waits.
func familyFigure(res *results) *figure {
	if res.S8 == nil && res.S9 == nil && res.S10 == nil {
		return nil
	}
	var row []*plot.Plot
	var libs []string
	addLibs := func(names []string) {
		for _, n := range names {
			if !slices.Contains(libs, n) {
				libs = append(libs, n)
			}
		}
	}
	ylabel := "ms (log scale)"
	if s := res.S8; s != nil {
		addLibs(s.Order)
		row = append(row, percentilePanel("S8 election: hand-off on resignation", ylabel, res.QuantileLevels, s.Order, func(n string) *dist {
			if r := s.Results[n]; r != nil {
				return &r.Handoff
			}
			return nil
		}, nil))
	}
	if s := res.S9; s != nil {
		addLibs(s.Order)
		row = append(row, percentilePanel(fmt.Sprintf("S9 semaphore (limit %d): wait", s.Limit), ylabel, res.QuantileLevels, s.Order, func(n string) *dist {
			if r := s.Results[n]; r != nil {
				return &r.Wait
			}
			return nil
		}, nil))
	}
	if s := res.S10; s != nil {
		addLibs(s.Order)
		for _, w := range []struct {
			title string
			get   func(*familyRes) *dist
		}{{"reads", func(r *familyRes) *dist { return r.ReadWait }}, {"writes", func(r *familyRes) *dist { return r.WriteWait }}} {
			row = append(row, percentilePanel(fmt.Sprintf("S10 read-write (%.0f %% reads): %s' wait", 100*s.ReadRatio, w.title), ylabel, res.QuantileLevels, s.Order, func(n string) *dist {
				if r := s.Results[n]; r != nil {
					return w.get(r)
				}
				return nil
			}, nil))
		}
	}
	cfg := res.Meta.Config
	return &figure{
		name:  "family-wait",
		title: "The lock family against the peers: hand-offs and waits",
		note: runNote(res, fmt.Sprintf("S8: %d candidates, TTL %v; S9/S10: %d goroutines on 2 clients, hold %v", lastInt(cfgS8Clients(res)), cfg.S8TTL, cfg.S9Workers, cfg.S9Hold)) +
			" · peers without a semaphore: L mutex keys; without a read-write lock: one mutex",
		plots:  [][]*plot.Plot{row},
		legend: libLegend(libs, false, nil),
		width:  vg.Points(math.Max(980, 330*float64(len(row))+170)), height: vg.Points(430),
	}
}

// s8IdleFigure: Redis commands/s while a leader holds, against the number
// of waiting candidates.
func s8IdleFigure(res *results) *figure {
	s := res.S8
	if s == nil || len(s.Order) == 0 {
		return nil
	}
	p := newPanel("Redis commands/s while a leader holds and N candidates wait", "waiting candidates N (log scale; 0: the leader alone, drawn at ½)", "commands/s (log scale)")
	pos := func(n int) float64 { return lg(math.Max(float64(n), 0.5)) }
	var ns []int
	ymin, ymax := math.Inf(1), 0.0
	for _, name := range drawOrder(s.Order) {
		r := s.Results[name]
		if r == nil {
			continue
		}
		var pts plotter.XYs
		for _, id := range r.Idle {
			if !slices.Contains(ns, id.Candidates) {
				ns = append(ns, id.Candidates)
			}
			if id.CmdsPerSec <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: pos(id.Candidates), Y: lg(id.CmdsPerSec)})
			ymin, ymax = min(ymin, id.CmdsPerSec), max(ymax, id.CmdsPerSec)
		}
		addLinePoints(p, pts, styleOf(name, s.Order))
	}
	slices.Sort(ns)
	var ticks plot.ConstantTicks
	for _, n := range ns {
		ticks = append(ticks, plot.Tick{Value: pos(n), Label: fmt.Sprint(n)})
	}
	p.X.Tick.Marker = ticks
	if len(ns) > 0 {
		p.X.Min, p.X.Max = pos(ns[0])-0.1, pos(ns[len(ns)-1])+0.1
	}
	if ymax > 0 {
		setLogY(p, ymin/1.5, ymax*1.5)
	}
	return &figure{
		name:   "s8-idle",
		title:  "S8 election: the cost of waiting candidates",
		note:   runNote(res, fmt.Sprintf("TTL %s for every library, idle window %s per N and round", s.TTL, s.Window)) + " · every command Redis ran (INFO commandstats, scripts' inner commands included)",
		plots:  [][]*plot.Plot{{p}},
		legend: libLegend(s.Order, true, nil),
		width:  vg.Points(760), height: vg.Points(460),
	}
}

func cfgS8Clients(res *results) []int {
	if res.S8 == nil {
		return nil
	}
	return res.S8.Clients
}

func lastInt(v []int) int {
	if len(v) == 0 {
		return 0
	}
	return v[len(v)-1]
}
