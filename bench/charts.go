package main

// Charts of a run's results (issue 11): latency distributions (S3 and S7
// waits, S4 hand-offs) as percentile plots, and S7's scaling with the number
// of clients (acquisitions/s, Redis cost per acquisition, fairness). They are
// drawn from the results JSON only, so a run's charts can be drawn again
// later without running anything:
//
//	go run . -out results.json -charts ../docs/charts          # run, then draw
//	go run . -charts ../docs/charts -from results.json          # draw again

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// chartFormats parses the -chart-format flag.
func chartFormats(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "svg", "png":
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		case "":
		default:
			return nil, fmt.Errorf("-chart-format: %q is neither svg nor png", f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-chart-format: no format")
	}
	return out, nil
}

// chartsFromFile draws the charts of the results JSON at path into dir.
func chartsFromFile(path, dir string, formats []string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return chartsFromJSON(data, dir, formats)
}

// chartsFromJSON draws the charts of a results JSON document into dir and
// returns the files it wrote. A fresh run goes through its own JSON too, so
// that its charts are exactly those -from would draw.
func chartsFromJSON(data []byte, dir string, formats []string) ([]string, error) {
	var res results
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("reading results: %w", err)
	}
	return writeCharts(&res, dir, formats)
}

// errNoCharts: the results have no scenario with a chart.
var errNoCharts = errors.New("the results have none of S3, S4, S7, S8, S9 or S10: no chart to draw")

// writeCharts draws every chart the results have data for into dir.
func writeCharts(res *results, dir string, formats []string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	setChartFonts()
	var figs []*figure
	add := func(f *figure) {
		if f != nil {
			figs = append(figs, f)
		}
	}
	add(s3WaitFigure(res))
	for _, h := range s7Holds(res) {
		add(s7WaitFigure(res, h))
	}
	add(s7ScalingFigure(res))
	add(s4Figure(res))
	add(familyFigure(res)) // charts_family.go
	add(s8IdleFigure(res))
	if len(figs) == 0 {
		return nil, errNoCharts
	}
	var written []string
	for _, f := range figs {
		for _, format := range formats {
			path := filepath.Join(dir, f.name+"."+format)
			if err := f.save(path, format); err != nil {
				return written, fmt.Errorf("%s: %w", path, err)
			}
			written = append(written, path)
		}
	}
	return written, nil
}

// setChartFonts makes every chart text sans-serif (Liberation Sans, which
// has the metrics of Arial: the SVG names Arial and Helvetica as fallbacks).
func setChartFonts() {
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	plotter.DefaultFont = plot.DefaultFont
}

// ---- libraries: order, colours, line styles ----

// chartLibs returns the libraries of the run in the bench's order, then any
// library the bench no longer knows, sorted.
func chartLibs(res *results) []string {
	var out []string
	for _, l := range libraries {
		if _, ok := res.Libraries[l.name]; ok {
			out = append(out, l.name)
		}
	}
	var rest []string
	for name := range res.Libraries {
		if !slices.Contains(out, name) {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// drawOrder puts renewlock last, so that its line is drawn on top.
func drawOrder(libs []string) []string {
	out := slices.Clone(libs)
	slices.SortStableFunc(out, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "renewlock":
			return 1
		case b == "renewlock":
			return -1
		}
		return 0
	})
	return out
}

// libStyle is how one library looks in every chart: a colour per family,
// dashes for a family's variant, a glyph for the scaling chart; renewlock
// in a heavy red line.
type libStyle struct {
	color  color.Color
	dashed bool
	glyph  draw.GlyphDrawer
	width  vg.Length
}

func rgb(v uint32) color.RGBA {
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 255}
}

var (
	colRenewlock = rgb(0xd62728)
	colMinimal   = rgb(0x555555)
	colRedsync   = rgb(0x1f77b4)
	colRedislock = rgb(0x2ca02c)
	colRueidis   = rgb(0x9467bd)
	colOther     = []color.RGBA{rgb(0xff7f0e), rgb(0x8c564b), rgb(0xe377c2), rgb(0x17becf), rgb(0xbcbd22)}
)

var libStyles = map[string]libStyle{
	"renewlock":        {colRenewlock, false, draw.CircleGlyph{}, 3},
	"minimal":          {colMinimal, false, draw.BoxGlyph{}, 1.4},
	"redsync":          {colRedsync, false, draw.PyramidGlyph{}, 1.4},
	"redsync-1-5ms":    {colRedsync, true, draw.TriangleGlyph{}, 1.4},
	"redislock-1ms":    {colRedislock, false, draw.PlusGlyph{}, 1.4},
	"redislock-10ms":   {colRedislock, true, draw.CrossGlyph{}, 1.4},
	"rueidislock":      {colRueidis, false, draw.RingGlyph{}, 1.4},
	"rueidislock-1key": {colRueidis, true, draw.SquareGlyph{}, 1.4},
}

func styleOf(name string, libs []string) libStyle {
	if s, ok := libStyles[name]; ok {
		return s
	}
	i := slices.Index(libs, name)
	return libStyle{colOther[max(i, 0)%len(colOther)], i/len(colOther)%2 == 1, draw.RingGlyph{}, 1.4}
}

func (s libStyle) line() draw.LineStyle {
	ls := draw.LineStyle{Color: s.color, Width: vg.Points(float64(s.width))}
	if s.dashed {
		ls.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	return ls
}

func (s libStyle) glyphStyle() draw.GlyphStyle {
	r := vg.Points(3.2)
	if s.width > 2 {
		r = vg.Points(4.2)
	}
	return draw.GlyphStyle{Color: s.color, Radius: r, Shape: s.glyph}
}

// ---- percentile plots ----

// tailX maps a probability to the tail-stretched axis of a percentile
// plot: 0 → 0, p50 → 0.30, p90 → 1, p99 → 2, p99.9 → 3.
func tailX(p float64) float64 { return -math.Log10(1 - p) }

// minPositive keeps values plottable on a log axis.
const minPositive = 1e-3

// distPoints turns a dist into the points of a percentile plot: its
// quantiles up to the rank of its largest sample (p = 1 − 1/N, at
// x = log10 N), where the curve ends with the maximum. A JSON from before
// quantiles were kept gives p50, p99, p99.9 and the maximum only.
func distPoints(d *dist, levels []float64) plotter.XYs {
	if d == nil || d.N == 0 {
		return nil
	}
	end := math.Log10(float64(d.N))
	var pts plotter.XYs
	addPt := func(x, y float64) {
		if math.IsNaN(y) || math.IsInf(y, 0) {
			return
		}
		pts = append(pts, plotter.XY{X: x, Y: max(y, minPositive)})
	}
	if len(d.Q) > 0 && len(d.Q) == len(levels) {
		for i, p := range levels {
			x := tailX(p)
			if x >= end-1e-9 {
				break // the maximum takes that place
			}
			addPt(x, d.Q[i])
		}
	} else {
		for _, q := range []struct{ x, v float64 }{{tailX(0.5), d.P50}, {2, d.P99}, {3, d.P999}} {
			if q.x < end-1e-9 && q.v > 0 {
				addPt(q.x, q.v)
			}
		}
	}
	addPt(end, d.Max)
	return pts
}

// percentileTicks labels the tail axis up to xmax.
func percentileTicks(xmax float64) plot.ConstantTicks {
	ticks := plot.ConstantTicks{{Value: 0, Label: "min"}, {Value: tailX(0.5), Label: "50%"}}
	labels := []string{"", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"}
	for k := 1; k < len(labels) && float64(k) <= xmax+1e-9; k++ {
		ticks = append(ticks, plot.Tick{Value: float64(k), Label: labels[k]})
	}
	for _, p := range []float64{0.75, 0.95, 0.995, 0.9995} {
		if x := tailX(p); x <= xmax {
			ticks = append(ticks, plot.Tick{Value: x}) // minor
		}
	}
	return ticks
}

// Log axes are drawn as linear axes of log10 of the values, labelled with
// the values: gonum's LogScale places a centred axis label by the
// arithmetic middle of the range, which pushes the plot down.

// lg is the position of v on a log axis.
func lg(v float64) float64 { return math.Log10(max(v, minPositive)) }

// logTicks labels a log axis (positions are log10 of the values) at 1, 2
// and 5 times powers of ten when the range spans few decades, at powers of
// ten only otherwise.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	mult := []int{1, 2, 5}
	if hi-lo > 3 {
		mult = []int{1}
	}
	var out []plot.Tick
	for e := math.Floor(lo) - 1; e <= math.Ceil(hi); e++ {
		for m := 1; m < 10; m++ {
			v := float64(m) * math.Pow(10, e)
			x := math.Log10(v)
			if x < lo-1e-9 || x > hi+1e-9 {
				continue
			}
			t := plot.Tick{Value: x}
			if slices.Contains(mult, m) {
				t.Label = fmtTick(v)
			}
			out = append(out, t)
		}
	}
	return out
}

// setLogY makes p's y axis a log axis over [lo, hi] (values, not logs).
func setLogY(p *plot.Plot, lo, hi float64) {
	p.Y.Tick.Marker = logTicks{}
	p.Y.Min, p.Y.Max = lg(lo), lg(hi)
}

func fmtTick(v float64) string {
	v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64) // 0.30000000000000004 → 0.3
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// newPanel is a plot with the charts' common look.
func newPanel(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.Title.TextStyle.Font.Weight = xfont.WeightBold
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = vg.Points(10.5)
		a.Tick.Label.Font.Size = vg.Points(9.5)
		a.Padding = vg.Points(2)
	}
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 225}
	grid.Horizontal.Color = color.Gray{Y: 225}
	grid.Vertical.Width = vg.Points(0.5)
	grid.Horizontal.Width = vg.Points(0.5)
	p.Add(grid)
	return p
}

// reference is a thin black or grey series drawn under the libraries (a
// PING distribution, say).
type reference struct {
	name  string
	d     *dist
	color color.Color
}

func (r reference) line() draw.LineStyle {
	return draw.LineStyle{Color: r.color, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(1.5), vg.Points(2.5)}}
}

// percentilePanel draws one distribution per library (get returns nil
// where a library has none) and the references.
func percentilePanel(title, ylabel string, levels []float64, libs []string, get func(string) *dist, refs []reference) *plot.Plot {
	p := newPanel(title, "percentile (each labelled step 10× rarer)", ylabel)
	xmax, ymin, ymax := 0.0, math.Inf(1), 0.0
	addLine := func(pts plotter.XYs, ls draw.LineStyle) {
		if len(pts) == 0 {
			return
		}
		for _, pt := range pts {
			xmax, ymin, ymax = max(xmax, pt.X), min(ymin, pt.Y), max(ymax, pt.Y)
		}
		pts = logYs(pts)
		if len(pts) == 1 { // a single sample: a dot
			s, err := plotter.NewScatter(pts)
			if err == nil {
				s.GlyphStyle = draw.GlyphStyle{Color: ls.Color, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
				p.Add(s)
			}
		} else if l, err := plotter.NewLine(pts); err == nil {
			l.LineStyle = ls
			p.Add(l)
		}
	}
	// The references (drawn first, under the libraries) are cut where the
	// libraries' samples end: a PING has many more samples than a
	// hand-off, and its tail would stretch the axis.
	libXmax := 0.0
	for _, name := range libs {
		if pts := distPoints(get(name), levels); len(pts) > 0 {
			libXmax = max(libXmax, pts[len(pts)-1].X)
		}
	}
	for _, r := range refs {
		pts := distPoints(r.d, levels)
		if libXmax > 0 {
			pts = slices.DeleteFunc(pts, func(pt plotter.XY) bool { return pt.X > libXmax+1e-9 })
		}
		addLine(pts, r.line())
	}
	for _, name := range drawOrder(libs) {
		addLine(distPoints(get(name), levels), styleOf(name, libs).line())
	}
	if ymax == 0 {
		p.Title.Text += " (no data)"
		return p
	}
	xmax = max(xmax, 1)
	p.X.Min, p.X.Max = 0, xmax
	p.X.Tick.Marker = percentileTicks(xmax)
	setLogY(p, ymin/1.15, ymax*1.15)
	return p
}

// logYs returns pts with log10 of each y.
func logYs(pts plotter.XYs) plotter.XYs {
	out := make(plotter.XYs, len(pts))
	for i, pt := range pts {
		out[i] = plotter.XY{X: pt.X, Y: lg(pt.Y)}
	}
	return out
}

// libLegend is the legend of a figure: renewlock first, then the peers in
// the bench's order, then the references.
func libLegend(libs []string, glyphs bool, refs []reference) []legendItem {
	var out []legendItem
	for _, name := range libs {
		st := styleOf(name, libs)
		l := &plotter.Line{LineStyle: st.line()}
		item := legendItem{name: name, thumbs: []plot.Thumbnailer{l}}
		if glyphs {
			item.thumbs = append(item.thumbs, &plotter.Scatter{GlyphStyle: st.glyphStyle()})
		}
		out = append(out, item)
	}
	for _, r := range refs {
		out = append(out, legendItem{name: r.name, thumbs: []plot.Thumbnailer{&plotter.Line{LineStyle: r.line()}}})
	}
	return out
}

// runNote is one line saying which run a figure shows.
func runNote(res *results, what string) string {
	m := res.Meta
	parts := []string{}
	if m.Date != "" {
		parts = append(parts, m.Date)
	}
	if m.Redis != "" {
		parts = append(parts, "Redis "+m.Redis)
	}
	if m.GOMAXPROCS > 0 {
		parts = append(parts, fmt.Sprintf("GOMAXPROCS %d", m.GOMAXPROCS))
	}
	if m.Config.Rounds > 0 {
		parts = append(parts, fmt.Sprintf("%d rounds", m.Config.Rounds))
	}
	if what != "" {
		parts = append(parts, what)
	}
	return strings.Join(parts, " · ")
}

// ---- the figures ----

func s3WaitFigure(res *results) *figure {
	if res.S3Hold0 == nil && res.S3Hold1 == nil {
		return nil
	}
	libs := chartLibs(res)
	ylabel := "wait (ms, log scale)"
	panel := func(title string, m map[string]*contRes) *plot.Plot {
		if m == nil {
			return nil
		}
		return percentilePanel(title, ylabel, res.QuantileLevels, libs, func(name string) *dist {
			if r := m[name]; r != nil {
				return &r.Wait
			}
			return nil
		}, nil)
	}
	cfg := res.Meta.Config
	return &figure{
		name:   "s3-wait",
		title:  fmt.Sprintf("S3 contention: wait from acquire call to holding, %d goroutines on 2 clients, one key", cfg.S3Workers),
		note:   runNote(res, fmt.Sprintf("%v per library and round", cfg.S3)),
		plots:  [][]*plot.Plot{{panel("hold 0", res.S3Hold0), panel("hold 1 ms", res.S3Hold1)}},
		legend: libLegend(libs, false, nil),
		width:  vg.Points(980), height: vg.Points(430),
	}
}

// s7Holds returns S7's hold names in the run's order.
func s7Holds(res *results) []string {
	if res.S7 == nil {
		return nil
	}
	holds := slices.Clone(res.S7.Holds)
	if len(holds) == 0 {
		for h := range res.S7.Results {
			holds = append(holds, h)
		}
		sort.Strings(holds)
	}
	return holds
}

// s7Clients returns S7's client counts in increasing order.
func s7Clients(res *results) []int {
	ns := slices.Clone(res.S7.Clients)
	if len(ns) == 0 {
		seen := map[int]bool{}
		for _, byN := range res.S7.Results {
			for k := range byN {
				if n, err := strconv.Atoi(k); err == nil && !seen[n] {
					seen[n] = true
					ns = append(ns, n)
				}
			}
		}
	}
	slices.Sort(ns)
	return ns
}

func holdTitle(h string) string {
	if h == "0" || h == "0s" {
		return "hold 0"
	}
	return "hold " + strings.Replace(h, "ms", " ms", 1)
}

func fileHold(h string) string {
	if h == "0s" {
		h = "0"
	}
	return strings.NewReplacer(".", "_", "µ", "u").Replace(h)
}

func s7WaitFigure(res *results, hold string) *figure {
	byN := res.S7.Results[hold]
	if byN == nil {
		return nil
	}
	libs := chartLibs(res)
	ns := s7Clients(res)
	cols := min(len(ns), 2)
	rows := (len(ns) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, n := range ns {
		m := byN[strconv.Itoa(n)]
		plots[i/cols][i%cols] = percentilePanel(fmt.Sprintf("N = %d clients", n), "wait (ms, log scale)", res.QuantileLevels, libs,
			func(name string) *dist {
				if r := m[name]; r != nil {
					return &r.Wait
				}
				return nil
			}, nil)
	}
	return &figure{
		name:   "s7-wait-hold" + fileHold(hold),
		title:  fmt.Sprintf("S7 many clients on one key, %s: wait from acquire call to holding", holdTitle(hold)),
		note:   runNote(res, "window "+res.S7.Window+" per round; one goroutine, Redis client and lock per client"),
		plots:  plots,
		legend: libLegend(libs, false, nil),
		width:  vg.Points(980), height: vg.Points(40 + 330*float64(rows)),
	}
}

// s7Metric is one row of the scaling figure.
type s7Metric struct {
	title, ylabel string
	get           func(*s7Res) float64
}

func s7ScalingFigure(res *results) *figure {
	if res.S7 == nil || len(res.S7.Results) == 0 {
		return nil
	}
	libs := chartLibs(res)
	ns := s7Clients(res)
	holds := s7Holds(res)
	metrics := []s7Metric{
		{"acquisitions/s", "acq/s (log scale)", func(r *s7Res) float64 { return r.AcqPerSec }},
		{"Redis CPU per acquisition", "µs per acq (log)", func(r *s7Res) float64 { return r.RedisCPUPerAcq }},
		{"Redis commands per acquisition", "commands per acq (log)", func(r *s7Res) float64 { return r.CmdsPerAcq }},
	}
	plots := make([][]*plot.Plot, len(metrics)+1)
	for row, m := range metrics {
		for _, h := range holds {
			plots[row] = append(plots[row], s7Panel(holdTitle(h)+": "+m.title, m.ylabel, res.S7.Results[h], ns, libs, m.get))
		}
	}
	for _, h := range holds {
		plots[len(metrics)] = append(plots[len(metrics)], s7FairnessPanel(holdTitle(h)+": fairness (worst round)", res.S7.Results[h], ns, libs))
	}
	return &figure{
		name:  "s7-scaling",
		title: "S7 contention at scale: N clients on one key",
		note: runNote(res, "window "+res.S7.Window+" per round") +
			" · Redis CPU: used_cpu_sys+user; commands: INFO commandstats, including those run inside scripts; fairness ∞: some client got nothing in a round",
		plots:  plots,
		legend: libLegend(libs, true, nil),
		width:  vg.Points(980), height: vg.Points(40 + 290*float64(len(plots))),
	}
}

// nAxis sets a log-scale x axis (positions log10 N) labelled at the
// client counts.
func nAxis(p *plot.Plot, ns []int) {
	var ticks plot.ConstantTicks
	for _, n := range ns {
		ticks = append(ticks, plot.Tick{Value: lg(float64(n)), Label: strconv.Itoa(n)})
	}
	p.X.Tick.Marker = ticks
	if len(ns) > 0 {
		p.X.Min, p.X.Max = lg(float64(ns[0])/1.25), lg(float64(ns[len(ns)-1])*1.25)
	}
}

func addLinePoints(p *plot.Plot, pts plotter.XYs, st libStyle) {
	if len(pts) == 0 {
		return
	}
	if len(pts) > 1 {
		if l, err := plotter.NewLine(pts); err == nil {
			l.LineStyle = st.line()
			p.Add(l)
		}
	}
	if s, err := plotter.NewScatter(pts); err == nil {
		s.GlyphStyle = st.glyphStyle()
		p.Add(s)
	}
}

func s7Panel(title, ylabel string, byN map[string]map[string]*s7Res, ns []int, libs []string, get func(*s7Res) float64) *plot.Plot {
	p := newPanel(title, "clients N (log scale)", ylabel)
	nAxis(p, ns)
	ymin, ymax := math.Inf(1), 0.0
	for _, name := range drawOrder(libs) {
		var pts plotter.XYs
		for _, n := range ns {
			r := byN[strconv.Itoa(n)][name]
			if r == nil {
				continue
			}
			v := get(r)
			if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: lg(float64(n)), Y: lg(v)})
			ymin, ymax = min(ymin, v), max(ymax, v)
		}
		addLinePoints(p, pts, styleOf(name, libs))
	}
	if ymax > 0 {
		setLogY(p, ymin/1.3, ymax*1.3)
	}
	return p
}

// s7FairnessPanel plots the worst round's max/min acquisitions per client;
// a library that left some client without any acquisition (max/min = ∞) is
// drawn on the "∞" line at the top.
func s7FairnessPanel(title string, byN map[string]map[string]*s7Res, ns []int, libs []string) *plot.Plot {
	p := newPanel(title, "clients N (log scale)", "max/min acquisitions per client (log)")
	nAxis(p, ns)
	finite := 1.0
	for _, m := range byN {
		for _, r := range m {
			if f := float64(r.Fairness); !math.IsInf(f, 0) && !math.IsNaN(f) {
				finite = max(finite, f)
			}
		}
	}
	top := math.Pow(10, math.Ceil(math.Log10(finite*1.5)+1e-9))
	inf := top * 2 // where ∞ is drawn
	// The issue-12 goal for renewlock: ≤ 1.3.
	if goal, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: lg(1.3)}, {X: p.X.Max, Y: lg(1.3)}}); err == nil {
		goal.LineStyle = draw.LineStyle{Color: color.Gray{Y: 120}, Width: vg.Points(0.8), Dashes: []vg.Length{vg.Points(2), vg.Points(2)}}
		p.Add(goal)
	}
	if lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: p.X.Min + 0.02, Y: lg(1.3)}}, Labels: []string{"1.3 (renewlock's goal)"}}); err == nil {
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Size = vg.Points(8.5)
			lb.TextStyle[i].Color = color.Gray{Y: 90}
			lb.TextStyle[i].YAlign = draw.YBottom
		}
		p.Add(lb)
	}
	for _, name := range drawOrder(libs) {
		var pts plotter.XYs
		for _, n := range ns {
			r := byN[strconv.Itoa(n)][name]
			if r == nil || math.IsNaN(float64(r.Fairness)) || r.Fairness <= 0 {
				continue
			}
			f := float64(r.Fairness)
			if math.IsInf(f, 0) {
				f = inf
			}
			pts = append(pts, plotter.XY{X: lg(float64(n)), Y: lg(f)})
		}
		addLinePoints(p, pts, styleOf(name, libs))
	}
	ticks := logTicks{}.Ticks(0, lg(top))
	ticks = append(ticks, plot.Tick{Value: lg(inf), Label: "∞"})
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min, p.Y.Max = lg(0.95), lg(inf*1.25)
	if sep, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: lg(top * 1.4)}, {X: p.X.Max, Y: lg(top * 1.4)}}); err == nil {
		sep.LineStyle = draw.LineStyle{Color: color.Gray{Y: 170}, Width: vg.Points(0.6)}
		p.Add(sep)
	}
	return p
}

func s4Figure(res *results) *figure {
	if res.S4 == nil && res.S4Local == nil {
		return nil
	}
	libs := chartLibs(res)
	var refs []reference
	if res.IdlePing.N > 0 {
		refs = append(refs, reference{"PING after idling", &res.IdlePing, color.Black})
	}
	if res.PingS4.N > 0 {
		refs = append(refs, reference{"PING back to back", &res.PingS4, color.Gray{Y: 150}})
	}
	ylabel := "hand-off (ms, log scale)"
	panel := func(title string, m map[string]*handoffRes) *plot.Plot {
		if m == nil {
			return nil
		}
		return percentilePanel(title, ylabel, res.QuantileLevels, libs, func(name string) *dist {
			if r := m[name]; r != nil {
				return &r.Handoff
			}
			return nil
		}, refs)
	}
	return &figure{
		name:  "s4-handoff",
		title: "S4 hand-off: from the holder's release to a blocked waiter holding",
		note: runNote(res, fmt.Sprintf("%d hand-offs per library and round, each after 10–30 ms of idleness", res.Meta.Config.S4)) +
			" · PING after idling: one round trip after the same idleness (the yardstick); back to back: PINGs in a row",
		plots: [][]*plot.Plot{{
			panel("waiter on another client", res.S4),
			panel("waiter on the same client", res.S4Local),
		}},
		legend: libLegend(libs, false, refs),
		width:  vg.Points(980), height: vg.Points(430),
	}
}

// ---- figure: panels, a title and a legend on one canvas ----

type legendItem struct {
	name   string
	thumbs []plot.Thumbnailer
}

// figure is a grid of panels with a title, a note under it and one legend
// on the right for all panels.
type figure struct {
	name          string // file name without extension
	title, note   string
	plots         [][]*plot.Plot // rows of panels; nil leaves a gap
	legend        []legendItem
	width, height vg.Length
}

func (f *figure) draw(c draw.Canvas) {
	c.FillPolygon(color.White, []vg.Point{c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}})
	top := c.Max.Y - vg.Points(10)
	title := text.Style{
		Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(15)),
		XAlign: draw.XLeft, YAlign: draw.YTop, Handler: plot.DefaultTextHandler,
	}
	title.Font.Weight = xfont.WeightBold
	c.FillText(title, vg.Point{X: c.Min.X + vg.Points(12), Y: top}, f.title)
	top -= title.Height(f.title) + vg.Points(4)
	if f.note != "" {
		note := title
		note.Font = font.From(plot.DefaultFont, vg.Points(9.5))
		note.Color = color.Gray{Y: 80}
		txt := wrap(note, f.note, " · ", c.Max.X-c.Min.X-vg.Points(24))
		c.FillText(note, vg.Point{X: c.Min.X + vg.Points(12), Y: top}, txt)
		top -= note.Height(txt) + vg.Points(4)
	}

	legendWidth := vg.Length(0)
	if len(f.legend) > 0 {
		lg := plot.NewLegend()
		lg.Top, lg.Left = true, true
		lg.TextStyle.Font.Size = vg.Points(10.5)
		lg.ThumbnailWidth = vg.Points(26)
		lg.Padding = vg.Points(5)
		for _, it := range f.legend {
			lg.Add(it.name, it.thumbs...)
			// 15 % slack: a viewer without Liberation Sans or Arial
			// falls back to a wider font.
			legendWidth = max(legendWidth, lg.ThumbnailWidth+lg.TextStyle.Width(" "+it.name)*1.15+vg.Points(16))
		}
		lc := draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: c.Max.X - legendWidth + vg.Points(6), Y: c.Min.Y},
			Max: vg.Point{X: c.Max.X, Y: top - vg.Points(26)},
		}}
		lg.Draw(lc)
	}

	rows := len(f.plots)
	cols := 0
	for _, r := range f.plots {
		cols = max(cols, len(r))
	}
	if rows == 0 || cols == 0 {
		return
	}
	grid := make([][]*plot.Plot, rows)
	for i, r := range f.plots {
		grid[i] = make([]*plot.Plot, cols)
		copy(grid[i], r)
	}
	area := draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
		Min: vg.Point{X: c.Min.X, Y: c.Min.Y},
		Max: vg.Point{X: c.Max.X - legendWidth, Y: top},
	}}
	tiles := draw.Tiles{
		Rows: rows, Cols: cols,
		PadX: vg.Points(22), PadY: vg.Points(18),
		PadTop: vg.Points(6), PadBottom: vg.Points(8), PadLeft: vg.Points(10), PadRight: vg.Points(6),
	}
	canvases := plot.Align(grid, tiles, area)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
}

// wrap breaks s at separators into lines no wider than width.
func wrap(sty text.Style, s, sep string, width vg.Length) string {
	var lines []string
	line := ""
	for _, part := range strings.Split(s, sep) {
		switch {
		case line == "":
			line = part
		case sty.Width(line+sep+part) <= width:
			line += sep + part
		default:
			lines = append(lines, line)
			line = part
		}
	}
	return strings.Join(append(lines, line), "\n")
}

// save writes the figure as SVG or PNG.
func (f *figure) save(path, format string) error {
	var buf bytes.Buffer
	switch format {
	case "svg":
		c := vgsvg.New(f.width, f.height)
		f.draw(draw.New(c))
		if _, err := c.WriteTo(&buf); err != nil {
			return err
		}
		return os.WriteFile(path, svgFontFallbacks(buf.Bytes()), 0o644)
	case "png":
		c := vgimg.NewWith(vgimg.UseWH(f.width, f.height), vgimg.UseDPI(144))
		f.draw(draw.New(c))
		if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
			return err
		}
		return os.WriteFile(path, buf.Bytes(), 0o644)
	}
	return fmt.Errorf("unknown chart format %q", format)
}

// svgFontFallbacks names fonts a browser has for the Liberation fonts the
// SVG was laid out with (same metrics), instead of embedding them.
func svgFontFallbacks(svg []byte) []byte {
	return bytes.ReplaceAll(svg, []byte("font-family:Liberation Sans;"), []byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;"))
}
