package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixedResults is a small run: three libraries, S3, S4 and S7 with two
// client counts, distributions of known shape, one starved client.
func fixedResults() *results {
	var res results
	res.Meta.Date = "2026-01-02T03:04:05Z"
	res.Meta.Redis = "7.0.15"
	res.Meta.GOMAXPROCS = 2
	res.Meta.Config = config{Rounds: 1, S3: time.Second, S3Workers: 16, S4: 20}
	res.Libraries = map[string]string{"renewlock": "", "minimal": "", "redsync": ""}
	res.QuantileLevels = quantileLevels
	spread := func(base time.Duration, n int) dist {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = base + time.Duration(i*i)*time.Microsecond
		}
		return summarize(d)
	}
	res.S3Hold0, res.S3Hold1 = map[string]*contRes{}, map[string]*contRes{}
	res.S4, res.S4Local = map[string]*handoffRes{}, map[string]*handoffRes{}
	res.S7 = &s7Out{Window: "1s", Clients: []int{2, 16}, Holds: []string{"0", "1ms"},
		Results: map[string]map[string]map[string]*s7Res{}}
	for _, h := range res.S7.Holds {
		res.S7.Results[h] = map[string]map[string]*s7Res{"2": {}, "16": {}}
	}
	for i, lib := range []string{"renewlock", "minimal", "redsync"} {
		k := time.Duration(i+1) * 100 * time.Microsecond
		res.S3Hold0[lib] = &contRes{Wait: spread(k, 500), Fairness: 1}
		res.S3Hold1[lib] = &contRes{Wait: spread(10*k, 300), Fairness: 1.2}
		res.S4[lib] = &handoffRes{Handoff: spread(k, 80)}
		res.S4Local[lib] = &handoffRes{Handoff: spread(k/2, 80)}
		for _, h := range res.S7.Holds {
			for _, n := range []string{"2", "16"} {
				r := &s7Res{AcqPerSec: 1000 / float64(i+1), RedisCPUPerAcq: 50 * float64(i+1), CmdsPerAcq: 4 + float64(i), Fairness: ratio(1 + float64(i)), Wait: spread(k, 200)}
				if lib == "redsync" && n == "16" {
					r.Fairness, r.Starved = ratio(math.Inf(1)), 3
				}
				res.S7.Results[h][n][lib] = r
			}
		}
	}
	res.IdlePing, res.PingS4 = spread(200*time.Microsecond, 100), spread(30*time.Microsecond, 800)
	return &res
}

// TestChartsFromJSON draws the charts of a fixed small run through its
// JSON (as -from does) and checks each file is a well-formed SVG or a PNG
// of the figure's size.
func TestChartsFromJSON(t *testing.T) {
	data, err := json.MarshalIndent(fixedResults(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	data = compactNumberArrays(data)
	dir := t.TempDir()
	files, err := chartsFromJSON(data, dir, []string{"svg", "png"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	want := []string{"s3-wait", "s7-wait-hold0", "s7-wait-hold1ms", "s7-scaling", "s4-handoff"}
	for _, w := range want {
		for _, ext := range []string{".svg", ".png"} {
			if !slices.Contains(names, w+ext) {
				t.Errorf("no %s%s among %v", w, ext, names)
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 5000 {
			t.Errorf("%s: only %d bytes", f, len(b))
		}
		switch filepath.Ext(f) {
		case ".svg":
			checkSVG(t, f, b)
		case ".png":
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if w := img.Bounds().Dx(); w != 980*2 { // 980 pt at 144 dpi
				t.Errorf("%s: %d pixels wide, want 1960", f, w)
			}
		}
	}
}

// checkSVG parses an SVG completely and checks it has the parts a reader
// needs: a root <svg>, lines, and the titles, axis labels and legend.
func checkSVG(t *testing.T, name string, b []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	root, paths := "", 0
	var texts strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Errorf("%s: not well-formed XML: %v", name, err)
			return
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			if el.Name.Local == "path" {
				paths++
			}
		case xml.CharData:
			texts.Write(el)
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q", name, root)
	}
	if paths < 50 {
		t.Errorf("%s: only %d paths", name, paths)
	}
	all := texts.String()
	for _, s := range []string{"renewlock", "minimal", "redsync", "2026-01-02T03:04:05Z"} {
		if !strings.Contains(all, s) {
			t.Errorf("%s: no text %q", name, s)
		}
	}
	if strings.Contains(name, "scaling") && !strings.Contains(all, "∞") {
		t.Errorf("%s: the starved client is not drawn at ∞", name)
	}
	if !bytes.Contains(b, []byte("sans-serif")) {
		t.Errorf("%s: no font fallback", name)
	}
}

// TestChartsFromOldJSON: a results file from before quantiles were kept
// still draws (from p50/p99/p99.9/max).
func TestChartsFromOldJSON(t *testing.T) {
	res := fixedResults()
	res.QuantileLevels = nil
	for _, m := range []map[string]*contRes{res.S3Hold0, res.S3Hold1} {
		for _, r := range m {
			r.Wait.Q = nil
		}
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chartsFromJSON(data, t.TempDir(), []string{"svg"}); err != nil {
		t.Fatal(err)
	}
	// 500 samples: p50, p99 and the maximum (at p99.8); p99.9 is beyond them.
	w := res.S3Hold0["renewlock"].Wait
	pts := distPoints(&w, nil)
	want := []float64{w.P50, w.P99, w.Max}
	if len(pts) != len(want) {
		t.Fatalf("summary-only dist gives %v, want p50, p99 and max %v", pts, want)
	}
	for i, pt := range pts {
		if pt.Y != want[i] {
			t.Errorf("point %d: %v, want %v", i, pt, want[i])
		}
	}
}

func TestDistPoints(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(i+1) * time.Millisecond
	}
	s := summarize(d)
	if len(s.Q) != len(quantileLevels) {
		t.Fatalf("%d quantiles, want %d", len(s.Q), len(quantileLevels))
	}
	pts := distPoints(&s, quantileLevels)
	first, last := pts[0], pts[len(pts)-1]
	if first.X != 0 || first.Y != 1 {
		t.Errorf("first point %v, want the minimum (0, 1)", first)
	}
	if math.Abs(last.X-2) > 1e-9 || last.Y != 100 {
		t.Errorf("last point %v, want the maximum at p99 (2, 100) for 100 samples", last)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].X < pts[i-1].X || pts[i].Y < pts[i-1].Y {
			t.Fatalf("not monotone at %d: %v then %v", i, pts[i-1], pts[i])
		}
	}
}

func TestCompactNumberArrays(t *testing.T) {
	in := "{\n  \"a\": [\n    1,\n    2.5e-05,\n    -3\n  ],\n  \"b\": [\n    \"inf\",\n    1\n  ]\n}"
	want := "{\n  \"a\": [1, 2.5e-05, -3],\n  \"b\": [\n    \"inf\",\n    1\n  ]\n}"
	if got := string(compactNumberArrays([]byte(in))); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRatioJSON(t *testing.T) {
	var rs []ratio
	if err := json.Unmarshal([]byte(`[1.5, "inf"]`), &rs); err != nil {
		t.Fatal(err)
	}
	if rs[0] != 1.5 || !math.IsInf(float64(rs[1]), 1) {
		t.Errorf("got %v", rs)
	}
}
