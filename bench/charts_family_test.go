package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFamilyCharts draws the family's charts from a fixed small run through
// its JSON, as -from does.
func TestFamilyCharts(t *testing.T) {
	res := fixedResults()
	res.Meta.Config.S8TTL, res.Meta.Config.S9Workers, res.Meta.Config.S9Hold = 2*time.Second, 16, time.Millisecond
	spread := func(base time.Duration, n int) dist {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = base + time.Duration(i*i)*time.Microsecond
		}
		return summarize(d)
	}
	res.S8 = &s8Out{TTL: "2s", Window: "1s", Clients: []int{0, 1, 8}, Results: map[string]*s8Res{}, Order: []string{"renewlock", "redsync"}}
	res.S9 = &familyOut{Limit: 4, Results: map[string]*familyRes{}, Order: []string{"renewlock", "redislock×L"}}
	res.S10 = &familyOut{ReadRatio: 0.9, Results: map[string]*familyRes{}, Order: []string{"renewlock-rw", "renewlock-mutex"}}
	for i, lib := range res.S8.Order {
		r := &s8Res{Handoff: spread(time.Duration(i+1)*300*time.Microsecond, 20)}
		for _, n := range res.S8.Clients {
			r.Idle = append(r.Idle, &idle{Candidates: n, CmdsPerSec: 10 + float64(n*(1+10*i))})
		}
		res.S8.Results[lib] = r
	}
	for i, lib := range res.S9.Order {
		res.S9.Results[lib] = &familyRes{Wait: spread(time.Duration(i+1)*time.Millisecond, 300)}
	}
	for i, lib := range res.S10.Order {
		rw, ww := spread(time.Duration(i+1)*time.Millisecond, 300), spread(time.Duration(i+2)*time.Millisecond, 30)
		res.S10.Results[lib] = &familyRes{Wait: rw, ReadWait: &rw, WriteWait: &ww}
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := chartsFromJSON(data, dir, []string{"svg"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"family-wait.svg", "s8-idle.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s not written (wrote %v): %v", name, files, err)
		}
		if err := xml.Unmarshal(b, new(struct{})); err != nil {
			t.Errorf("%s: not well-formed XML: %v", name, err)
		}
		for _, want := range []string{"<svg", "renewlock", "redsync", "2026-01-02T03:04:05Z", "sans-serif"} {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("%s: no %q", name, want)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "family-wait.svg")); !bytes.Contains(b, []byte("redislock×L")) || !bytes.Contains(b, []byte("renewlock-mutex")) {
		t.Errorf("family-wait.svg: the S9/S10 variants are missing from the legend")
	}
}
