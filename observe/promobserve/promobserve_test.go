package promobserve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
	"github.com/renewlock/renewlock/observe/promobserve"
)

var quiet = renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// series maps a sample's name and labels, as series(name, "l", "v", …)
// spells them, to its value; a histogram gives name_count and name_sum.
type series map[string]float64

// id spells a series: name{label="value",…}, labels in the order given
// (the tests give them sorted by name, as the parser keeps them).
func id(name string, labelValues ...string) string {
	if len(labelValues) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name + "{")
	for i := 0; i < len(labelValues); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labelValues[i], labelValues[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

// scraper fetches /metrics over HTTP, as Prometheus does.
type scraper struct {
	t   *testing.T
	url string
	hc  *http.Client
}

// serveMetrics serves reg's metrics on /metrics on a loopback port until
// the test ends.
func serveMetrics(t *testing.T, reg *prometheus.Registry) *scraper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	tr := &http.Transport{}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
		tr.CloseIdleConnections()
	})
	return &scraper{t: t, url: "http://" + ln.Addr().String() + "/metrics", hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// scrape fetches and parses the metrics in the text exposition format.
func (s *scraper) scrape() (series, map[string]*dto.MetricFamily) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("scrape: %s", resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/plain" {
		s.t.Fatalf("scrape: Content-Type %q", resp.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatalf("scrape: parsing: %v", err)
	}
	list := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		list = append(list, f)
	}
	return flatten(list), fams
}

// flatten turns metric families into series.
func flatten(fams []*dto.MetricFamily) series {
	out := series{}
	for _, f := range fams {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			var lv []string
			for _, l := range m.GetLabel() {
				lv = append(lv, l.GetName(), l.GetValue())
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[id(name, lv...)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[id(name, lv...)] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[id(name+"_count", lv...)] = float64(m.GetHistogram().GetSampleCount())
				out[id(name+"_sum", lv...)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// until scrapes until cond holds of the series, or fails after 5 s.
func (s *scraper) until(what string, cond func(series) bool) series {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := s.scrape()
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s; last scrape:\n%s", what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sumQueued adds renewlock_acquisitions_total over queued, as queued="any".
func (s series) sumQueued() series {
	out := series{}
	for _, o := range []string{"ok", "not_acquired", "canceled", "deadline", "permission", "rejected", "closed", "error"} {
		out[acq(o, "any")] = s[acq(o, "false")] + s[acq(o, "true")]
	}
	return out
}

func (s series) String() string {
	var lines []string
	for k, v := range s {
		if strings.HasPrefix(k, "renewlock_") {
			lines = append(lines, fmt.Sprintf("  %s %v", k, v))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// expect fails the test for each series whose value is not the one wanted.
func expect(t *testing.T, step string, got series, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: no series %s", step, k)
		} else if g != v {
			t.Errorf("%s: %s = %v, want %v", step, k, g, v)
		}
	}
}

func acq(outcome, queued string) string {
	return id("renewlock_acquisitions_total", "outcome", outcome, "queued", queued)
}

func acqDur(outcome, queued string) string {
	return id("renewlock_acquire_duration_seconds_count", "outcome", outcome, "queued", queued)
}

func rel(outcome, handedOff string) string {
	return id("renewlock_releases_total", "handed_off", handedOff, "outcome", outcome)
}

func loss(cause string) string { return id("renewlock_lease_losses_total", "cause", cause) }

const (
	held     = "renewlock_held_locks"
	waiting  = "renewlock_waiting_acquires"
	heldDur  = "renewlock_held_duration_seconds_count"
	renewals = "renewlock_renewals_total"
	rttCount = "renewlock_renewal_rtt_seconds_count"
)

// Real locks on a real redis-server, observed by Metrics, served on
// /metrics and scraped over HTTP: every series moves as the locks do —
// acquisitions by outcome and queueing, a hand-off, renewals, a loss by
// cause (ForceRelease by another client), the gauges — and the counters
// start at zero.
func TestMetricsScrapedOverHTTP(t *testing.T) {
	srv := redistest.Start(t)
	metrics := promobserve.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	scr := serveMetrics(t, reg)

	c := newClient(t, srv.Client(), renewlock.WithObserver(metrics.Observer()), renewlock.WithTTL(600*time.Millisecond))
	untrack := metrics.Track(c)
	operator := newClient(t, srv.Client()) // not observed
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := "scraped"

	got, fams := scr.scrape()
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "key" {
					t.Fatalf("%s has a key label without WithKeyLabel", name)
				}
			}
		}
	}
	expect(t, "at start", got, map[string]float64{
		acq("ok", "false"): 0, acq("ok", "true"): 0, acq("not_acquired", "false"): 0,
		acq("deadline", "true"): 0, acq("permission", "false"): 0, acq("closed", "true"): 0,
		rel("ok", "false"): 0, rel("ok", "true"): 0, rel("lost", "false"): 0,
		loss("not_owner"): 0, loss("deadline"): 0, loss("rejected"): 0,
		renewals: 0, "renewlock_renewal_failures_total": 0, rttCount: 0,
		heldDur: 0, held: 0, waiting: 0,
	})
	if _, ok := got[acq("not_acquired", "true")]; ok {
		t.Error("a queued not_acquired series exists: TryAcquire never queues")
	}
	if _, ok := got[acqDur("ok", "false")]; ok {
		t.Error("an acquire-duration series exists before any acquisition")
	}

	// Taken at once; a TryAcquire of the held key is not acquired.
	l1, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("TryAcquire: %v", err)
	}
	got, _ = scr.scrape()
	expect(t, "after Acquire and TryAcquire", got, map[string]float64{
		acq("ok", "false"): 1, acqDur("ok", "false"): 1, acq("not_acquired", "false"): 1, held: 1, waiting: 0,
	})

	// A waiter queues; renewals of the lock and of its place go on.
	granted := make(chan *renewlock.Lock, 1)
	go func() {
		l, err := c.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		granted <- l
	}()
	scr.until("the waiter and two renewals", func(s series) bool {
		return s[waiting] == 1 && s[renewals] >= 2 && s[rttCount] >= 1
	})

	// The release hands the lock to the waiter.
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := <-granted
	if l2 == nil {
		t.FailNow()
	}
	got, _ = scr.scrape()
	expect(t, "after the hand-off", got, map[string]float64{
		rel("ok", "true"): 1, rel("ok", "false"): 0, acq("ok", "true"): 1, acqDur("ok", "true"): 1,
		heldDur: 1, held: 1, waiting: 0,
	})
	if got["renewlock_acquire_duration_seconds_sum{outcome=\"ok\",queued=\"true\"}"] <= 0 {
		t.Error("the queued acquisition took no time")
	}

	// An operator removes the holder: a loss, cause not_owner; its
	// release reports the loss.
	if _, err := operator.ForceRelease(ctx, key); err != nil {
		t.Fatal(err)
	}
	scr.until("the loss", func(s series) bool { return s[loss("not_owner")] == 1 })
	if err := l2.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Release of the lost lock: %v", err)
	}
	got, _ = scr.scrape()
	expect(t, "after the loss", got, map[string]float64{
		loss("not_owner"): 1, loss("deadline"): 0, rel("lost", "false"): 1, heldDur: 2, held: 0,
	})

	// Waits that end by deadline and by cancellation, while another client
	// holds the key.
	blocker, err := operator.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = c.Acquire(short, key)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with a short deadline: %v", err)
	}
	gaveUp, giveUp := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() {
		_, err := c.Acquire(gaveUp, key)
		waited <- err
	}()
	scr.until("the second waiter", func(s series) bool { return s[waiting] == 1 })
	giveUp()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", err)
	}
	got, _ = scr.scrape()
	// (queued or not, depending on whether the context ended before the
	// call had joined the queue)
	expect(t, "after the deadline and the cancellation", got.sumQueued(), map[string]float64{
		acq("deadline", "any"): 1, acq("canceled", "any"): 1,
	})
	expect(t, "after the deadline and the cancellation", got, map[string]float64{waiting: 0})

	// Redis refuses: a key that is not a lock (rejected), a user without
	// rights (permission).
	admin := srv.Client()
	if err := admin.Set(ctx, renewlock.DefaultKeyPrefix+"not-a-lock", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquire(ctx, "not-a-lock"); !errors.Is(err, renewlock.ErrRejected) {
		t.Fatalf("TryAcquire of a string key: %v", err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "nobody", "on", ">pw", "~*", "&*", "-@all").Err(); err != nil {
		t.Fatal(err)
	}
	weak := newClient(t, srv.Client(func(o *redis.Options) { o.Username, o.Password, o.MaxRetries = "nobody", "pw", -1 }),
		renewlock.WithObserver(metrics.Observer()))
	if _, err := weak.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrPermission) {
		t.Fatalf("TryAcquire without rights: %v", err)
	}
	got, _ = scr.scrape()
	expect(t, "after Redis refused", got, map[string]float64{
		acq("rejected", "false"): 1, acq("permission", "false"): 1,
	})

	// Close ends a wait.
	go func() {
		_, err := c.Acquire(ctx, key)
		waited <- err
	}()
	scr.until("the third waiter", func(s series) bool { return s[waiting] == 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; !errors.Is(err, renewlock.ErrClientClosed) {
		t.Fatalf("Acquire during Close: %v", err)
	}
	untrack()
	_ = blocker.Release(ctx)
	got, _ = scr.scrape()
	expect(t, "after Close", got.sumQueued(), map[string]float64{acq("closed", "any"): 1})
	expect(t, "after Close", got, map[string]float64{
		held: 0, waiting: 0,
		// The operator client is not observed: its acquisition and release
		// count nowhere.
		acq("ok", "false"): 1, rel("ok", "false"): 0,
	})
	if got[renewals] < 2 || got["renewlock_renewal_rtt_seconds_sum"] <= 0 {
		t.Errorf("renewals %v, round trips %v taking %v s", got[renewals], got[rttCount], got["renewlock_renewal_rtt_seconds_sum"])
	}
}

// newClient returns a Client on rdb, closed when the test ends.
func newClient(t *testing.T, rdb redis.UniversalClient, opts ...renewlock.Option) *renewlock.Client {
	t.Helper()
	c, err := renewlock.New(rdb, append([]renewlock.Option{quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
