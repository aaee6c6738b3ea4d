//go:build linux

package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/renewlock/renewlock/internal/redistest"
)

// exporter is a running `renewlock exporter`; its stderr goes to a file,
// read while it runs.
type exporter struct {
	cmd    *exec.Cmd
	stderr string // path
	url    string
	done   chan struct{}
	err    error
}

// startExporter starts the exporter on a free loopback port and waits
// until it serves.
func startExporter(t *testing.T, environ []string, args ...string) *exporter {
	t.Helper()
	e := &exporter{stderr: filepath.Join(t.TempDir(), "stderr"), done: make(chan struct{})}
	f, err := os.Create(e.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e.cmd = exec.Command(bin, append([]string{"exporter", "--listen", "127.0.0.1:0"}, args...)...)
	e.cmd.Env, e.cmd.Stderr = environ, f
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.err = e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() { _ = e.cmd.Process.Kill(); <-e.done })
	re := regexp.MustCompile(`serving (http://\S+/metrics)`)
	if !waitFor(20*time.Second, func() bool {
		m := re.FindStringSubmatch(e.log())
		if m != nil {
			e.url = m[1]
		}
		return m != nil
	}) {
		t.Fatalf("the exporter never served; stderr:\n%s", e.log())
	}
	return e
}

func (e *exporter) log() string { b, _ := os.ReadFile(e.stderr); return string(b) }

// scrapeClient keeps no connection open after a scrape (goleak).
var scrapeClient = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// scrape fetches and parses the metrics with a real HTTP client.
func (e *exporter) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url, nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := scrapeClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", e.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scraping %s: %s, %s", e.url, resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of name with the given labels
// (name=value pairs), and whether it exists.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		if len(m.Label)*2 != len(labels) {
			continue
		}
		match := true
		for i, l := range m.Label {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

// waitMetrics scrapes until cond holds.
func (e *exporter) waitMetrics(t *testing.T, what string, cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	var fams map[string]*dto.MetricFamily
	if !waitFor(15*time.Second, func() bool { fams = e.scrape(t); return cond(fams) }) {
		var b strings.Builder
		for name, f := range fams {
			if strings.HasPrefix(name, "renewlock_") {
				fmt.Fprintf(&b, "%s %v\n", name, f.Metric)
			}
		}
		t.Fatalf("the metrics never showed %s:\n%s", what, b.String())
	}
	return fams
}

func gauge(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	v, _ := value(fams, name, labels...)
	return v
}

// 22. The exporter's series follow the locks as they are taken, queued for
// and released, and Redis going away and coming back; per-key series only
// when asked, bounded by --per-key; SIGTERM stops it gracefully.
func TestExporter(t *testing.T) {
	srv := redistest.Start(t)
	base := uniqueKey(t)
	e := startExporter(t, env(srv), base+"/*", "--per-key", "1")

	fams := e.scrape(t)
	for name, want := range map[string]dto.MetricType{
		"renewlock_up": dto.MetricType_GAUGE, "renewlock_held_locks": dto.MetricType_GAUGE, "renewlock_waiters": dto.MetricType_GAUGE,
		"renewlock_max_waiters": dto.MetricType_GAUGE, "renewlock_oldest_holder_age_seconds": dto.MetricType_GAUGE,
		"renewlock_scrape_errors_total": dto.MetricType_COUNTER, "renewlock_scrape_duration_seconds": dto.MetricType_GAUGE,
	} {
		if f := fams[name]; f == nil || f.GetType() != want || f.GetHelp() == "" {
			t.Fatalf("%s: %v, want a %v with help", name, f, want)
		}
	}
	if gauge(fams, "renewlock_up") != 1 || gauge(fams, "renewlock_held_locks") != 0 || gauge(fams, "renewlock_oldest_holder_age_seconds") != 0 ||
		gauge(fams, "renewlock_max_waiters") != 0 || gauge(fams, "renewlock_per_key_omitted_locks") != 0 {
		t.Fatalf("with no lock held: %v", fams)
	}
	if _, ok := value(fams, "renewlock_scrape_errors_total", "kind", "unavailable"); !ok {
		t.Fatal("renewlock_scrape_errors_total{kind=\"unavailable\"} is missing before any error")
	}
	if fams["renewlock_lock_age_seconds"] != nil {
		t.Fatal("per-key series with no lock held")
	}

	holdLock(t, srv, uniqueKey(t)+"-outside", 10*time.Second) // not under the pattern
	holderA, _, childA := holdLock(t, srv, base+"/a", 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	holdLock(t, srv, base+"/b", 10*time.Second)
	start(t, env(srv), "run", "--key", base+"/b", "--", "true")
	start(t, env(srv), "run", "--key", base+"/b", "--", "true")
	fams = e.waitMetrics(t, "2 held, 2 waiting on b", func(f map[string]*dto.MetricFamily) bool {
		return gauge(f, "renewlock_held_locks") == 2 && gauge(f, "renewlock_max_waiters") == 2 && gauge(f, "renewlock_waiters") == 2
	})
	oldest := gauge(fams, "renewlock_oldest_holder_age_seconds")
	ageA, okA := value(fams, "renewlock_lock_age_seconds", "key", base+"/a")
	if _, okB := value(fams, "renewlock_lock_age_seconds", "key", base+"/b"); !okA || okB || ageA != oldest || oldest < 0.1 ||
		gauge(fams, "renewlock_lock_waiters", "key", base+"/a") != 0 || gauge(fams, "renewlock_per_key_omitted_locks") != 1 {
		t.Fatalf("per-key series: want a (the oldest, age %v) only, b omitted: %v %v", oldest, fams["renewlock_lock_age_seconds"], fams["renewlock_per_key_omitted_locks"])
	}
	if ttl := gauge(fams, "renewlock_lock_ttl_seconds", "key", base+"/a"); ttl <= 0 || ttl > 10 {
		t.Fatalf("renewlock_lock_ttl_seconds = %v", ttl)
	}
	// Computed at scrape time: the age grows.
	time.Sleep(300 * time.Millisecond)
	if later := gauge(e.scrape(t), "renewlock_oldest_holder_age_seconds"); later < oldest+0.25 {
		t.Fatalf("oldest holder's age went from %v to %v in 300ms", oldest, later)
	}

	// a is released: b is the oldest, its series replaces a's.
	_ = syscall.Kill(childA, syscall.SIGTERM)
	holderA.wait(t, 10*time.Second)
	fams = e.waitMetrics(t, "a released", func(f map[string]*dto.MetricFamily) bool { return gauge(f, "renewlock_held_locks") == 1 })
	if _, ok := value(fams, "renewlock_lock_age_seconds", "key", base+"/b"); !ok || gauge(fams, "renewlock_lock_waiters", "key", base+"/b") != 2 || gauge(fams, "renewlock_per_key_omitted_locks") != 0 {
		t.Fatalf("after a's release: %v", fams["renewlock_lock_waiters"])
	}

	// Redis goes away: up 0, an error counted, no lock gauges; then back.
	srv.Kill()
	fams = e.scrape(t)
	if gauge(fams, "renewlock_up") != 0 || gauge(fams, "renewlock_scrape_errors_total", "kind", "unavailable") < 1 || fams["renewlock_held_locks"] != nil {
		t.Fatalf("with Redis down: up %v, errors %v, held %v", gauge(fams, "renewlock_up"), fams["renewlock_scrape_errors_total"], fams["renewlock_held_locks"])
	}
	srv.Restart()
	e.waitMetrics(t, "Redis back", func(f map[string]*dto.MetricFamily) bool {
		return gauge(f, "renewlock_up") == 1 && gauge(f, "renewlock_held_locks") == 0
	})
	if log := e.log(); !strings.Contains(log, "unavailable") || !strings.Contains(log, "answers again") {
		t.Fatalf("stderr does not report the outage and the recovery:\n%s", log)
	}

	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the exporter did not stop on SIGTERM")
	}
	if e.err != nil || !strings.Contains(e.log(), "stopped") {
		t.Fatalf("exporter after SIGTERM: %v; stderr:\n%s", e.err, e.log())
	}
}

// 23. No per-key series by default, whatever the keys; the viewer ACL of
// the README suffices; a wrong password fails at once (77); Redis down at
// the start is served as up 0; SIGINT stops it; bad flags are usage errors.
func TestExporterDefaultsAndErrors(t *testing.T) {
	srv := redistest.Start(t)
	base := uniqueKey(t)
	for i := range 5 {
		holdLock(t, srv, fmt.Sprintf("%s/%d", base, i), 10*time.Second)
	}
	setUser(t, srv, "viewer", "resetkeys", "~renewlock:*", "resetchannels", "-@all", "+scan", "+evalsha", "+eval", "+hmget", "+pttl", "+time", "+ping")
	e := startExporter(t, env(nil, "RENEWLOCK_REDIS="+srv.URL(), "RENEWLOCK_USER=viewer", "RENEWLOCK_PASS="+secret))
	fams := e.waitMetrics(t, "5 held", func(f map[string]*dto.MetricFamily) bool { return gauge(f, "renewlock_held_locks") >= 5 })
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "key" {
					t.Fatalf("%s has a key label without --per-key", name)
				}
			}
		}
	}
	if gauge(fams, "renewlock_up") != 1 || strings.Contains(e.log(), "warning") {
		t.Fatalf("as the viewer user: up %v; stderr:\n%s", gauge(fams, "renewlock_up"), e.log())
	}
	_ = e.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the exporter did not stop on SIGINT")
	}
	if e.err != nil {
		t.Fatalf("exporter after SIGINT: %v", e.err)
	}

	setUser(t, srv, "bob", "~*", "&*", "+@all")
	checkExit(t, env(nil, "RENEWLOCK_REDIS="+userURL(srv, "bob", secret+"x")), 77, []string{"permission problem", "WRONGPASS"}, "exporter", "--listen", "127.0.0.1:0")

	down := redistest.Start(t)
	down.Kill()
	e = startExporter(t, env(nil, "RENEWLOCK_REDIS="+down.URL()))
	if fams := e.scrape(t); gauge(fams, "renewlock_up") != 0 || !strings.Contains(e.log(), "serving anyway") {
		t.Fatalf("with Redis down at the start: up %v; stderr:\n%s", gauge(fams, "renewlock_up"), e.log())
	}

	busy := strings.TrimPrefix(strings.TrimSuffix(e.url, "/metrics"), "http://")
	checkExit(t, env(srv), 69, []string{"cannot listen on --listen " + busy}, "exporter", "--listen", busy)
	checkExit(t, env(srv), 64, []string{"--listen is required"}, "exporter")
	checkExit(t, env(srv), 64, []string{"--listen \"nonsense\""}, "exporter", "--listen", "nonsense")
	checkExit(t, env(srv), 64, []string{"--per-key -1"}, "exporter", "--listen", ":0", "--per-key", "-1")
	checkExit(t, env(srv), 64, []string{"at most one PATTERN"}, "exporter", "--listen", ":0", "a", "b")
}
