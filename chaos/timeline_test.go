package chaos

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// pausedHistory is a fixed small redis-pause history on one key: c0 holds
// and writes, Redis is paused, c0 is told of the loss 20 ms before its
// lease's PTTL runs out, p0 takes over after the pause and a late write of
// c0 is rejected.
func pausedHistory() *History {
	ms := func(n int) int64 { return 1_000_000_000 + int64(n)*int64(time.Millisecond) }
	key := "chaos/test/k0"
	h := NewHistory()
	h.end = ms(3000)
	h.log = map[string][]workload.LogEntry{}
	ev := func(e workload.Event) {
		e.Key = key
		h.events = append(h.events, e)
	}
	ev(workload.Event{Kind: workload.KindAcquire, Worker: "c0/" + key, Token: 100, Call: ms(0), Ret: ms(2)})
	for t := 20; t < 1000; t += 20 {
		ev(workload.Event{Kind: workload.KindWrite, Worker: "c0/" + key, Token: 100, Call: ms(t), Ret: ms(t + 1), OK: true})
	}
	ev(workload.Event{Kind: workload.KindDone, Worker: "c0/" + key, Token: 100, Ret: ms(1480), Class: workload.ClassLost})
	ev(workload.Event{Kind: workload.KindWrite, Worker: "c0/" + key, Token: 100, Call: ms(1600), Ret: ms(2210), OK: false})
	ev(workload.Event{Kind: workload.KindRelease, Worker: "c0/" + key, Token: 100, Call: ms(2220), Ret: ms(2230), Class: workload.ClassLost})
	ev(workload.Event{Kind: workload.KindAcquire, Worker: "p0/" + key, Token: 200, Call: ms(300), Ret: ms(2205)})
	ev(workload.Event{Kind: workload.KindWrite, Worker: "p0/" + key, Token: 200, Call: ms(2206), Ret: ms(2208), OK: true})
	ev(workload.Event{Kind: workload.KindRelease, Worker: "p0/" + key, Token: 200, Call: ms(2800), Ret: ms(2801)})
	ev(workload.Event{Kind: workload.KindDone, Worker: "p0/" + key, Token: 200, Ret: ms(2801), Class: workload.ClassReleased})
	h.faults = append(h.faults, Fault{Kind: FaultRedisPause, Start: ms(500), End: ms(2200)})
	for t := 0; t <= 500; t += 10 {
		h.samples = append(h.samples, Sample{Key: key, Sent: ms(t), Owned: true, Token: 100, PTTL: 1000 * time.Millisecond})
	}
	for t := 2210; t <= 2800; t += 10 {
		h.samples = append(h.samples, Sample{Key: key, Sent: ms(t), Owned: true, Token: 200, PTTL: 1000 * time.Millisecond})
	}
	return h
}

func TestTimeline(t *testing.T) {
	h := pausedHistory()
	dir := t.TempDir()
	files, err := h.WriteTimelines(dir, "redis-pause", []string{"svg", "png"}, TimelineOptions{
		Title: "redis-pause (test)", Subtitle: "a fixed history", TTL: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for _, want := range []string{"redis-pause.svg", "redis-pause.png", "redis-pause-zoom.svg", "redis-pause-zoom.png"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s among %v", want, names)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Ext(f) == ".png" {
			if _, err := png.Decode(bytes.NewReader(b)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			continue
		}
		texts, paths := readSVG(t, f, b)
		want := []string{"redis-pause (test)", "k0 in Redis", "c0", "loss signalled (Done)", "lead → earliest expiry",
			"fault window", "Redis lease: rest of last PTTL"}
		if !strings.Contains(f, "zoom") { // the close-up ends before these
			want = append(want, "p0", "fenced write rejected")
		}
		for _, s := range want {
			if !strings.Contains(texts, s) {
				t.Errorf("%s: no text %q", f, s)
			}
		}
		if paths < 30 {
			t.Errorf("%s: only %d paths", f, paths)
		}
	}
	// The close-up names the loss and its lead (PTTL 1 s seen at 500 ms,
	// told at 1480 ms: 20 ms).
	from, to, key, what, ok := h.zoomWindow(time.Second)
	if !ok || key != "chaos/test/k0" || !strings.Contains(what, "c0 told 20ms before") {
		t.Errorf("zoom: %v %v %q %q %v", from, to, key, what, ok)
	}
	if from > 1480*time.Millisecond || to < 1500*time.Millisecond {
		t.Errorf("zoom window %v–%v does not contain the loss and the expiry", from, to)
	}
}

func TestTimelineBadName(t *testing.T) {
	if err := pausedHistory().WriteTimeline(filepath.Join(t.TempDir(), "x.gif"), TimelineOptions{}); err == nil {
		t.Error("a .gif name was accepted")
	}
}

// readSVG parses an SVG completely and returns its text and its number of
// paths.
func readSVG(t *testing.T, name string, b []byte) (string, int) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	var texts strings.Builder
	root, paths := "", 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", name, err)
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
			texts.WriteByte('\n')
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q", name, root)
	}
	return texts.String(), paths
}
