package chaos

// Timeline charts of one scenario (issue 11): what every holder believed,
// what Redis had, what was injected and what the fenced register decided,
// on one time axis. `go test -run TestChaos/redis-pause -chaos.timeline DIR`
// (or CHAOS_TIMELINE_DIR=DIR) writes DIR/redis-pause.svg, the whole
// scenario, and DIR/redis-pause-zoom.svg, a close-up of its first lease
// loss.

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// TimelineOptions describe one timeline chart.
type TimelineOptions struct {
	Title    string        // e.g. the scenario's name
	Subtitle string        // e.g. what was injected
	TTL      time.Duration // the locks' TTL, for the expiry bound of each loss
	// From and To select a window of the history, in time since its first
	// event; both zero draw all of it.
	From, To time.Duration
	// Keys keeps only the lanes of these lock keys (all if empty).
	Keys []string
}

// WriteTimelines writes dir/name.FORMAT (the whole history) and, if some
// holder was told of a loss through Done, dir/name-zoom.FORMAT (around the
// first such loss: its key's lanes with something in that window) for
// every format ("svg",
// "png"). The History must be finished (Env.Stop). It returns the files
// written.
func (h *History) WriteTimelines(dir, name string, formats []string, opt TimelineOptions) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	write := func(suffix string, o TimelineOptions) error {
		for _, f := range formats {
			path := filepath.Join(dir, name+suffix+"."+f)
			if err := h.WriteTimeline(path, o); err != nil {
				return err
			}
			out = append(out, path)
		}
		return nil
	}
	if err := write("", opt); err != nil {
		return out, err
	}
	if from, to, key, what, ok := h.zoomWindow(opt.TTL); ok {
		z := opt
		z.From, z.To, z.Keys = from, to, []string{key}
		z.Subtitle = strings.TrimSpace(z.Subtitle + " · close-up: " + what)
		if err := write("-zoom", z); err != nil {
			return out, err
		}
	}
	return out, nil
}

// WriteTimeline draws the timeline to path, as SVG or PNG by its extension.
func (h *History) WriteTimeline(path string, opt TimelineOptions) error {
	tl := h.timeline(opt)
	var buf bytes.Buffer
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		c := vgsvg.New(tl.width, tl.height)
		tl.draw(draw.New(c))
		if _, err := c.WriteTo(&buf); err != nil {
			return err
		}
		return os.WriteFile(path, bytes.ReplaceAll(buf.Bytes(), []byte("font-family:Liberation Sans;"),
			[]byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;")), 0o644)
	case ".png":
		c := vgimg.NewWith(vgimg.UseWH(tl.width, tl.height), vgimg.UseDPI(144))
		tl.draw(draw.New(c))
		if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
			return err
		}
		return os.WriteFile(path, buf.Bytes(), 0o644)
	}
	return fmt.Errorf("timeline %s: the name must end in .svg or .png", path)
}

// ---- what is drawn ----

// tlRect is a bar on a lane (or a band across lanes), in seconds and lane
// units.
type tlRect struct {
	x0, x1, y0, y1 float64
	fill           color.Color
	edge           *draw.LineStyle
}

// tlSeg is a line segment.
type tlSeg struct {
	x0, y0, x1, y1 float64
	style          draw.LineStyle
}

// tlMark is a glyph.
type tlMark struct {
	x, y  float64
	style draw.GlyphStyle
}

// shapes is a gonum Plotter for many rectangles, segments and glyphs
// (a Plotter each would be thousands).
type shapes struct {
	rects []tlRect
	segs  []tlSeg
	marks []tlMark
}

func (s *shapes) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for _, r := range s.rects {
		x0, x1 := trX(r.x0), trX(r.x1)
		if x1-x0 < vg.Points(0.8) { // keep a 1 ms interval visible
			x1 = x0 + vg.Points(0.8)
		}
		y0, y1 := trY(r.y0), trY(r.y1)
		pts := []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}
		if r.fill != nil {
			c.FillPolygon(r.fill, c.ClipPolygonXY(pts))
		}
		if r.edge != nil {
			c.StrokeLines(*r.edge, c.ClipLinesXY(append(pts, pts[0]))...)
		}
	}
	for _, g := range s.segs {
		c.StrokeLines(g.style, c.ClipLinesXY([]vg.Point{{X: trX(g.x0), Y: trY(g.y0)}, {X: trX(g.x1), Y: trY(g.y1)}})...)
	}
	for _, m := range s.marks {
		pt := vg.Point{X: trX(m.x), Y: trY(m.y)}
		if c.Contains(pt) {
			c.DrawGlyph(m.style, pt)
		}
	}
}

// thickCross is an × drawn with a heavier line than draw.CrossGlyph.
type thickCross struct{}

func (thickCross) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	ls := draw.LineStyle{Color: sty.Color, Width: vg.Points(1.8)}
	r := sty.Radius
	c.StrokeLine2(ls, pt.X-r, pt.Y-r, pt.X+r, pt.Y+r)
	c.StrokeLine2(ls, pt.X-r, pt.Y+r, pt.X+r, pt.Y-r)
}

// lane is one row of the chart: a key's Redis-side lease, or one holder
// loop on that key.
type lane struct {
	key, label string
	worker     string // "" for the Redis lane
	y          float64
}

// Colours: one per client (process or in-process Client), shared by its
// validity bars and by the Redis lease of its tokens.
var clientColors = []color.RGBA{
	{0x1f, 0x77, 0xb4, 255}, {0x2c, 0xa0, 0x2c, 255}, {0x94, 0x67, 0xbd, 255},
	{0xff, 0x7f, 0x0e, 255}, {0x17, 0xbe, 0xcf, 255}, {0x8c, 0x56, 0x4b, 255},
	{0xe3, 0x77, 0xc2, 255}, {0xbc, 0xbd, 0x22, 255},
}

var (
	colLoss     = color.RGBA{0xd6, 0x27, 0x28, 255}
	colLossRel  = color.RGBA{0xff, 0x98, 0x00, 255}
	colLead     = color.RGBA{0x1b, 0x7a, 0x3a, 255}
	colLate     = color.RGBA{0xd6, 0x27, 0x28, 255}
	colFault    = color.NRGBA{0xff, 0xa0, 0x30, 60}
	colFaultTgt = color.NRGBA{0xff, 0x6f, 0x00, 80}
	colWriteOK  = color.RGBA{0x33, 0x33, 0x33, 255}
	colKilled   = color.Black
	colUnknown  = color.RGBA{0x90, 0x90, 0x90, 255}
)

// fade returns c with opacity a (of 255).
func fade(c color.RGBA, a uint8) color.NRGBA {
	return color.NRGBA{c.R, c.G, c.B, a}
}

// timelineChart is the laid-out chart.
type timelineChart struct {
	plot          *plot.Plot
	title, sub    string
	legend        []legendEntry
	width, height vg.Length
}

type legendEntry struct {
	name   string
	thumbs []plot.Thumbnailer
}

// rectThumb and markThumb draw legend thumbnails.
type rectThumb struct {
	fill color.Color
	edge *draw.LineStyle
	h    float64 // fraction of the entry height
}

func (t rectThumb) Thumbnail(c *draw.Canvas) {
	mid, hh := (c.Min.Y+c.Max.Y)/2, (c.Max.Y-c.Min.Y)*vg.Length(t.h)/2
	pts := []vg.Point{{X: c.Min.X, Y: mid - hh}, {X: c.Max.X, Y: mid - hh}, {X: c.Max.X, Y: mid + hh}, {X: c.Min.X, Y: mid + hh}}
	if t.fill != nil {
		c.FillPolygon(t.fill, pts)
	}
	if t.edge != nil {
		c.StrokeLines(*t.edge, append(pts, pts[0]))
	}
}

type segThumb struct {
	style draw.LineStyle
	tick  bool // a vertical tick at the right end
}

func (t segThumb) Thumbnail(c *draw.Canvas) {
	mid := (c.Min.Y + c.Max.Y) / 2
	c.StrokeLine2(t.style, c.Min.X, mid, c.Max.X, mid)
	if t.tick {
		c.StrokeLine2(t.style, c.Max.X, c.Min.Y, c.Max.X, c.Max.Y)
	}
}

type markThumb struct{ style draw.GlyphStyle }

func (t markThumb) Thumbnail(c *draw.Canvas) { c.DrawGlyph(t.style, c.Center()) }

// timeline builds the chart from the history.
func (h *History) timeline(opt TimelineOptions) *timelineChart {
	h.mu.Lock()
	defer h.mu.Unlock()
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	plotter.DefaultFont = plot.DefaultFont

	// The holders, with the checker's own validity intervals.
	type hid struct {
		worker string
		token  uint64
	}
	holders := map[hid]*holder{}
	var order []*holder
	var writes []workload.Event
	t0 := int64(math.MaxInt64)
	for i := range h.events {
		e := &h.events[i]
		for _, t := range []int64{e.Call, e.Ret} {
			if t > 0 {
				t0 = min(t0, t)
			}
		}
		id := hid{e.Worker, e.Token}
		switch e.Kind {
		case workload.KindAcquire:
			if holders[id] == nil {
				hd := &holder{worker: e.Worker, key: e.Key, token: e.Token, acq: *e, start: e.Ret}
				holders[id] = hd
				order = append(order, hd)
			}
		case workload.KindDone:
			if hd := holders[id]; hd != nil {
				hd.done = e
			}
		case workload.KindRelease:
			if hd := holders[id]; hd != nil {
				hd.rel = e
			}
		case workload.KindWrite, workload.KindWriteErr:
			writes = append(writes, *e)
		}
	}
	for _, s := range h.samples {
		t0 = min(t0, s.Sent)
	}
	if t0 == math.MaxInt64 {
		t0 = 0
	}
	end := h.end
	if end == 0 {
		for _, hd := range order {
			end = max(end, hd.acq.Ret)
		}
	}
	for _, hd := range order {
		h.finishInterval(hd)
	}
	sec := func(t int64) float64 { return float64(t-t0) / 1e9 }
	from, to := 0.0, sec(end)
	if opt.From != 0 || opt.To != 0 {
		from, to = opt.From.Seconds(), opt.To.Seconds()
	}
	inWindow := func(a, b int64) bool { return sec(b) >= from && sec(a) <= to }

	// Lanes: per key, the Redis lease, then every holder loop on it.
	keySet := map[string]bool{}
	loops := map[string]map[string]bool{}
	for _, hd := range order {
		keySet[hd.key] = true
		if loops[hd.key] == nil {
			loops[hd.key] = map[string]bool{}
		}
		loops[hd.key][hd.worker] = true
	}
	for _, s := range h.samples {
		keySet[s.Key] = true
	}
	var keys []string
	for k := range keySet {
		if len(opt.Keys) == 0 || slices.Contains(opt.Keys, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)

	// Lanes with nothing in the window are dropped when zoomed.
	zoomed := opt.From != 0 || opt.To != 0
	active := map[string]bool{}
	for _, hd := range order {
		if inWindow(hd.acq.Call, hd.end) {
			active[hd.worker] = true
		}
	}
	clients := map[string]int{}
	var clientOrder []string
	var lanes []lane
	for _, k := range keys {
		lanes = append(lanes, lane{key: k, label: shortKey(k) + " in Redis"})
		var ws []string
		for w := range loops[k] {
			if !zoomed || active[w] {
				ws = append(ws, w)
			}
		}
		sort.Slice(ws, func(i, j int) bool { return laneLess(ws[i], ws[j]) })
		for _, w := range ws {
			lanes = append(lanes, lane{key: k, worker: w, label: loopLabel(w)})
		}
	}
	// A client's colour does not depend on the window.
	for _, hd := range order {
		c := workload.WorkerOf(hd.worker)
		if _, ok := clients[c]; !ok {
			clients[c] = 0
			clientOrder = append(clientOrder, c)
		}
	}
	sort.Slice(clientOrder, func(i, j int) bool { return laneLess(clientOrder[i], clientOrder[j]) })
	for i, c := range clientOrder {
		clients[c] = i
	}
	colorOf := func(worker string) color.RGBA {
		return clientColors[clients[workload.WorkerOf(worker)]%len(clientColors)]
	}
	// Lane positions: top to bottom, a small gap between keys.
	y := 0.0
	laneOf := map[string]float64{} // worker → y
	redisLane := map[string]float64{}
	var ticks plot.ConstantTicks
	var separators []float64
	for i := range lanes {
		if i > 0 && lanes[i].key != lanes[i-1].key {
			y -= 0.5
			separators = append(separators, y+0.25)
		}
		lanes[i].y = y
		if lanes[i].worker == "" {
			redisLane[lanes[i].key] = y
		} else {
			laneOf[lanes[i].worker] = y
		}
		ticks = append(ticks, plot.Tick{Value: y, Label: lanes[i].label})
		y--
	}
	ymin, ymax := y+0.5, 0.5

	sh := &shapes{}
	drawn := map[string]bool{} // what the legend must explain
	// Fault windows: a band over every lane, darker over the lanes of a
	// targeted client.
	for _, f := range h.faults {
		fEnd := f.End
		if fEnd == 0 {
			fEnd = f.Start
		}
		if !inWindow(f.Start, fEnd) {
			continue
		}
		if f.End == 0 {
			drawn["instant"] = true
			sh.segs = append(sh.segs, tlSeg{sec(f.Start), ymin, sec(f.Start), ymax,
				draw.LineStyle{Color: color.RGBA{0xff, 0x6f, 0x00, 255}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(3), vg.Points(2)}}})
			continue
		}
		sh.rects = append(sh.rects, tlRect{x0: sec(f.Start), x1: sec(f.End), y0: ymin, y1: ymax, fill: colFault})
		drawn["fault"] = true
		if f.Target != "" {
			drawn["target"] = true
			for w, ly := range laneOf {
				if workload.WorkerOf(w) == f.Target {
					sh.rects = append(sh.rects, tlRect{x0: sec(f.Start), x1: sec(f.End), y0: ly - 0.5, y1: ly + 0.5, fill: colFaultTgt})
				}
			}
		}
	}
	for _, s := range separators {
		sh.segs = append(sh.segs, tlSeg{from, s, to, s, draw.LineStyle{Color: color.Gray{Y: 160}, Width: vg.Points(0.6)}})
	}

	// Redis-side leases from the observer's samples: owned by one token
	// from its first to its last sample; if the observer saw nothing more
	// of the key until that last PTTL ran out (Redis paused, killed or
	// unreachable), the rest of that PTTL is drawn hatched: Redis could
	// keep the key that long, and no longer.
	tokenOwner := map[string]string{}
	for _, hd := range order {
		tokenOwner[fmt.Sprintf("%s/%d", hd.key, hd.token)] = hd.worker
	}
	byKey := map[string][]Sample{}
	for _, s := range h.samples {
		byKey[s.Key] = append(byKey[s.Key], s)
	}
	for k, ss := range byKey {
		ly, ok := redisLane[k]
		if !ok {
			continue
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].Sent < ss[j].Sent })
		for i := 0; i < len(ss); {
			if !ss[i].Owned {
				i++
				continue
			}
			j := i
			for j+1 < len(ss) && ss[j+1].Owned && ss[j+1].Token == ss[i].Token {
				j++
			}
			first, last := ss[i], ss[j]
			c := colUnknown // a token no holder reported (e.g. handed to a frozen waiter)
			if w, ok := tokenOwner[fmt.Sprintf("%s/%d", k, first.Token)]; ok {
				c = colorOf(w)
			} else if inWindow(first.Sent, last.Sent+int64(last.PTTL)) {
				drawn["unknown"] = true
			}
			if inWindow(first.Sent, last.Sent) {
				sh.rects = append(sh.rects, tlRect{x0: sec(first.Sent), x1: sec(last.Sent), y0: ly - 0.32, y1: ly + 0.32, fill: c})
			}
			exp := last.Sent + int64(last.PTTL)
			// (After the last sample of the run the observer had stopped:
			// nothing is projected there.)
			if last.PTTL > 0 && j+1 < len(ss) && ss[j+1].Sent > exp {
				// Blind until the lease ran out; a Redis restart loses
				// the key at once.
				if f := h.faultDuring(FaultRedisKill, "", last.Sent, exp); f != nil && f.Start > last.Sent {
					exp = f.Start
				}
				edge := draw.LineStyle{Color: c, Width: vg.Points(0.8), Dashes: []vg.Length{vg.Points(2), vg.Points(1.5)}}
				if inWindow(last.Sent, exp) {
					drawn["projected"] = true
					sh.rects = append(sh.rects, tlRect{x0: sec(last.Sent), x1: sec(exp), y0: ly - 0.32, y1: ly + 0.32, fill: fade(c, 60), edge: &edge})
				}
			}
			i = j + 1
		}
	}

	// Holders: waiting in Acquire (thin grey), valid (bar), how the
	// interval ended, and for each loss the lower bound of Redis's expiry.
	observed := h.observedExpiry()
	for _, hd := range order {
		ly, ok := laneOf[hd.worker]
		if !ok || !inWindow(hd.acq.Call, hd.end) {
			continue
		}
		c := colorOf(hd.worker)
		if hd.acq.Ret-hd.acq.Call > int64(2*time.Millisecond) {
			sh.segs = append(sh.segs, tlSeg{sec(hd.acq.Call), ly, sec(hd.acq.Ret), ly, draw.LineStyle{Color: color.Gray{Y: 170}, Width: vg.Points(0.8)}})
			drawn["wait"] = true
		}
		sh.rects = append(sh.rects, tlRect{x0: sec(hd.start), x1: sec(hd.end), y0: ly - 0.3, y1: ly + 0.3, fill: c})
		switch {
		case hd.killed != 0 && hd.end == hd.killed:
			drawn["killed"] = true
			sh.marks = append(sh.marks, tlMark{sec(hd.killed), ly, draw.GlyphStyle{Color: colKilled, Radius: vg.Points(3.5), Shape: draw.BoxGlyph{}}})
		case hd.done != nil && hd.done.Class == workload.ClassLost && (hd.rel == nil || hd.done.Ret < hd.rel.Call):
			told := hd.done.Ret
			e, _, _, _ := h.expiryBound(hd, int64(opt.TTL), observed)
			st := draw.LineStyle{Color: colLead, Width: vg.Points(1.6)}
			drawn["loss"] = true
			if e < told {
				st.Color = colLate
				drawn["late"] = true
			} else {
				drawn["lead"] = true
			}
			if opt.TTL > 0 {
				sh.segs = append(sh.segs,
					tlSeg{sec(told), ly, sec(e), ly, st},
					tlSeg{sec(e), ly - 0.42, sec(e), ly + 0.42, st})
			}
			sh.marks = append(sh.marks, tlMark{sec(told), ly, draw.GlyphStyle{Color: colLoss, Radius: vg.Points(4), Shape: thickCross{}}})
		case hd.rel != nil && hd.rel.Class == workload.ClassLost:
			drawn["lossRel"] = true
			sh.marks = append(sh.marks, tlMark{sec(hd.rel.Ret), ly, draw.GlyphStyle{Color: colLossRel, Radius: vg.Points(3.5), Shape: thickCross{}}})
		}
	}

	// Fenced writes, on the writer's lane, when the register answered.
	for _, w := range writes {
		ly, ok := laneOf[w.Worker]
		if !ok || w.Kind != workload.KindWrite || !inWindow(w.Ret, w.Ret) {
			continue
		}
		drawn["writes"] = true
		if w.OK {
			sh.marks = append(sh.marks, tlMark{sec(w.Ret), ly, draw.GlyphStyle{Color: colWriteOK, Radius: vg.Points(0.9), Shape: draw.CircleGlyph{}}})
		} else {
			drawn["rejected"] = true
			sh.marks = append(sh.marks, tlMark{sec(w.Ret), ly + 0.3, draw.GlyphStyle{Color: colLoss, Radius: vg.Points(4.5), Shape: draw.PyramidGlyph{}}})
		}
	}

	p := plot.New()
	p.X.Label.Text = "time since the scenario started (s)"
	p.X.Min, p.X.Max = from, max(to, from+1e-3)
	p.X.Tick.Marker = secondTicks{}
	p.Y.Min, p.Y.Max = ymin, ymax
	p.Y.Tick.Marker = ticks
	p.Y.Tick.Length = 0
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = vg.Points(10.5)
		a.Tick.Label.Font.Size = vg.Points(9)
	}
	grid := plotter.NewGrid()
	grid.Horizontal.Width = 0
	grid.Vertical.Color = color.Gray{Y: 225}
	grid.Vertical.Width = vg.Points(0.5)
	p.Add(grid, sh)

	tl := &timelineChart{plot: p, title: opt.Title, sub: opt.Subtitle}
	tl.width = vg.Points(1180)
	tl.height = vg.Points(120 + 13*float64(len(lanes)+len(keys)/2))
	tl.height = max(tl.height, vg.Points(300))
	// Legend: clients, then what the marks mean.
	shown := map[string]bool{}
	for _, l := range lanes {
		if l.worker != "" {
			shown[workload.WorkerOf(l.worker)] = true
		}
	}
	for _, c := range clientOrder {
		if !shown[c] {
			continue
		}
		tl.legend = append(tl.legend, legendEntry{"holder valid: " + c, []plot.Thumbnailer{rectThumb{fill: clientColors[clients[c]%len(clientColors)], h: 0.6}}})
	}
	if len(clientOrder) > 0 {
		hatch := draw.LineStyle{Color: clientColors[0], Width: vg.Points(0.8), Dashes: []vg.Length{vg.Points(2), vg.Points(1.5)}}
		tl.legend = append(tl.legend, legendEntry{"Redis lease (observed owner)", []plot.Thumbnailer{rectThumb{fill: clientColors[0], h: 0.64}}})
		if drawn["unknown"] {
			tl.legend = append(tl.legend, legendEntry{"Redis lease, token no holder reported", []plot.Thumbnailer{rectThumb{fill: colUnknown, h: 0.64}}})
		}
		if drawn["projected"] {
			tl.legend = append(tl.legend, legendEntry{"Redis lease: rest of last PTTL", []plot.Thumbnailer{rectThumb{fill: fade(clientColors[0], 60), edge: &hatch, h: 0.64}}})
		}
	}
	for _, it := range []struct {
		key, name string
		thumb     plot.Thumbnailer
	}{
		{"wait", "waiting in Acquire", segThumb{style: draw.LineStyle{Color: color.Gray{Y: 170}, Width: vg.Points(0.8)}}},
		{"loss", "loss signalled (Done)", markThumb{draw.GlyphStyle{Color: colLoss, Radius: vg.Points(4), Shape: thickCross{}}}},
		{"lead", "lead → earliest expiry", segThumb{style: draw.LineStyle{Color: colLead, Width: vg.Points(1.6)}, tick: true}},
		{"late", "told after expiry", segThumb{style: draw.LineStyle{Color: colLate, Width: vg.Points(1.6)}, tick: true}},
		{"lossRel", "loss learned by Release", markThumb{draw.GlyphStyle{Color: colLossRel, Radius: vg.Points(3.5), Shape: thickCross{}}}},
		{"killed", "process killed", markThumb{draw.GlyphStyle{Color: colKilled, Radius: vg.Points(3.5), Shape: draw.BoxGlyph{}}}},
		{"writes", "fenced write accepted", markThumb{draw.GlyphStyle{Color: colWriteOK, Radius: vg.Points(1.5), Shape: draw.CircleGlyph{}}}},
		{"rejected", "fenced write rejected", markThumb{draw.GlyphStyle{Color: colLoss, Radius: vg.Points(4.5), Shape: draw.PyramidGlyph{}}}},
		{"fault", "fault window", rectThumb{fill: colFault, h: 1}},
		{"target", "… on its target's lanes", rectThumb{fill: colFaultTgt, h: 1}},
		{"instant", "instant fault", segThumb{style: draw.LineStyle{Color: color.RGBA{0xff, 0x6f, 0x00, 255}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(3), vg.Points(2)}}}},
	} {
		if drawn[it.key] {
			tl.legend = append(tl.legend, legendEntry{it.name, []plot.Thumbnailer{it.thumb}})
		}
	}
	return tl
}

// zoomWindow picks a close-up around the first lease loss signalled
// through Done: from 0.3 TTL before the earlier of the signal and the
// earliest Redis expiry (or just before the fault that caused it) to 0.2
// TTL after the later.
func (h *History) zoomWindow(ttl time.Duration) (from, to time.Duration, key, what string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t0 := int64(math.MaxInt64)
	for _, e := range h.events {
		for _, t := range []int64{e.Call, e.Ret} {
			if t > 0 {
				t0 = min(t0, t)
			}
		}
	}
	for _, s := range h.samples {
		t0 = min(t0, s.Sent)
	}
	acq := map[string]workload.Event{}
	rel := map[string]workload.Event{}
	for _, e := range h.events {
		id := e.Worker + "/" + strconv.FormatUint(e.Token, 10)
		switch e.Kind {
		case workload.KindAcquire:
			acq[id] = e
		case workload.KindRelease:
			rel[id] = e
		}
	}
	observed := h.observedExpiry()
	best := int64(math.MaxInt64)
	for _, e := range h.events {
		if e.Kind != workload.KindDone || e.Class != workload.ClassLost {
			continue
		}
		id := e.Worker + "/" + strconv.FormatUint(e.Token, 10)
		a, okA := acq[id]
		if r, okR := rel[id]; !okA || (okR && r.Call <= e.Ret) || e.Ret >= best {
			continue
		}
		hd := &holder{worker: e.Worker, key: e.Key, token: e.Token, acq: a}
		exp, _, _, _ := h.expiryBound(hd, int64(ttl), observed)
		best, key = e.Ret, e.Key
		lo := min(e.Ret, exp) - int64(3*ttl/10)
		// Back to the start of the fault that led to it, if it began
		// at most 2.5 TTL before the signal.
		for _, f := range h.faults {
			if f.End != 0 && f.Start <= e.Ret && f.End >= min(e.Ret, exp) && e.Ret-f.Start <= int64(5*ttl/2) {
				lo = min(lo, f.Start-int64(ttl/5))
			}
		}
		from = time.Duration(lo - t0)
		to = time.Duration(max(e.Ret, exp) - t0 + int64(ttl/5))
		lead := time.Duration(exp - e.Ret).Round(time.Millisecond)
		if lead >= 0 {
			what = fmt.Sprintf("first loss, %s told %v before Redis could expire the key", loopLabel(e.Worker), lead)
		} else {
			what = fmt.Sprintf("first loss, %s told %v after Redis could expire the key", loopLabel(e.Worker), -lead)
		}
		ok = true
	}
	return max(from, 0), to, key, what, ok
}

// secondTicks labels a time axis in seconds at a round step, about ten
// labels in all, with a minor tick half way.
type secondTicks struct{}

func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	if span <= 0 {
		return nil
	}
	step := 1e-3
	for _, m := range []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000} {
		step = m * 1e-3
		if span/step <= 12 {
			break
		}
	}
	prec := max(0, int(math.Ceil(-math.Log10(step)-1e-9)))
	var out []plot.Tick
	for i := math.Ceil(lo/step*2 - 1e-9); i/2*step <= hi+1e-9; i++ {
		v := i / 2 * step
		if v == 0 {
			v = 0 // not "-0"
		}
		t := plot.Tick{Value: v}
		if int(i)%2 == 0 {
			t.Label = strconv.FormatFloat(v, 'f', prec, 64)
		}
		out = append(out, t)
	}
	return out
}

// shortKey is the last element of a key name ("chaos/redis-pause/k0" → "k0").
func shortKey(k string) string {
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		return k[i+1:]
	}
	return k
}

// loopLabel names a holder loop by its client and, for the second loop of
// a client on a key, "#1": "c0/chaos/x/k0#1" → "c0#1".
func loopLabel(worker string) string {
	c := workload.WorkerOf(worker)
	if i := strings.LastIndexByte(worker, '#'); i > strings.LastIndexByte(worker, '/') {
		return c + worker[i:]
	}
	return c
}

// laneLess orders clients and loops: in-process clients (c0, c1, …) before
// processes (p0, p1, …), numerically.
func laneLess(a, b string) bool {
	ka, kb := laneKey(a), laneKey(b)
	if ka.kind != kb.kind {
		return ka.kind < kb.kind
	}
	if ka.n != kb.n {
		return ka.n < kb.n
	}
	return a < b
}

type laneSortKey struct {
	kind string
	n    int
}

func laneKey(w string) laneSortKey {
	c := workload.WorkerOf(w)
	i := strings.IndexFunc(c, func(r rune) bool { return r >= '0' && r <= '9' })
	if i < 0 {
		return laneSortKey{c, 0}
	}
	n, _ := strconv.Atoi(c[i:])
	return laneSortKey{c[:i], n}
}

// draw lays out the title, the plot and the legend on the right.
func (tl *timelineChart) draw(c draw.Canvas) {
	c.FillPolygon(color.White, []vg.Point{c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}})
	top := c.Max.Y - vg.Points(10)
	title := text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(15)),
		XAlign: draw.XLeft, YAlign: draw.YTop, Handler: plot.DefaultTextHandler}
	title.Font.Weight = xfont.WeightBold
	if tl.title != "" {
		c.FillText(title, vg.Point{X: c.Min.X + vg.Points(12), Y: top}, tl.title)
		top -= title.Height(tl.title) + vg.Points(4)
	}
	if tl.sub != "" {
		sub := title
		sub.Font = font.From(plot.DefaultFont, vg.Points(10))
		sub.Color = color.Gray{Y: 70}
		c.FillText(sub, vg.Point{X: c.Min.X + vg.Points(12), Y: top}, tl.sub)
		top -= sub.Height(tl.sub) + vg.Points(6)
	}
	lg := plot.NewLegend()
	lg.Top, lg.Left = true, true
	lg.TextStyle.Font.Size = vg.Points(9.5)
	lg.ThumbnailWidth = vg.Points(22)
	lg.Padding = vg.Points(4)
	width := vg.Length(0)
	for _, e := range tl.legend {
		lg.Add(e.name, e.thumbs...)
		// 15 % slack: a viewer without Liberation Sans or Arial falls back
		// to a wider font.
		width = max(width, lg.ThumbnailWidth+lg.TextStyle.Width(" "+e.name)*1.15+vg.Points(16))
	}
	lg.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
		Min: vg.Point{X: c.Max.X - width + vg.Points(6), Y: c.Min.Y},
		Max: vg.Point{X: c.Max.X, Y: top - vg.Points(8)},
	}})
	tl.plot.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
		Min: vg.Point{X: c.Min.X + vg.Points(8), Y: c.Min.Y + vg.Points(6)},
		Max: vg.Point{X: c.Max.X - width, Y: top},
	}})
}
