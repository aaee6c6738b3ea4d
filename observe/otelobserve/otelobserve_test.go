package otelobserve_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
	"github.com/renewlock/renewlock/observe"
	"github.com/renewlock/renewlock/observe/otelobserve"
)

var quiet = renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// sdk is an OpenTelemetry SDK that keeps everything in memory.
type sdk struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newSDK(t *testing.T) *sdk {
	s := &sdk{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.spans))
	s.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	t.Cleanup(func() {
		_ = s.tp.Shutdown(context.Background())
		_ = s.mp.Shutdown(context.Background())
	})
	return s
}

func (s *sdk) telemetry(t *testing.T, opts ...otelobserve.Option) *otelobserve.Telemetry {
	t.Helper()
	tel, err := otelobserve.New(append([]otelobserve.Option{otelobserve.WithTracerProvider(s.tp), otelobserve.WithMeterProvider(s.mp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return tel
}

// points maps name{attr=value,…} (attributes sorted) to a data point's
// value; a histogram gives name_count and name_sum.
type points map[string]float64

func pointID(name string, set attribute.Set) string {
	var kv []string
	for it := set.Iter(); it.Next(); {
		a := it.Attribute()
		kv = append(kv, fmt.Sprintf("%s=%s", a.Key, a.Value.String()))
	}
	if len(kv) == 0 {
		return name
	}
	return name + "{" + strings.Join(kv, ",") + "}"
}

func (s *sdk) collect(t *testing.T) points {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := points{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelobserve.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[pointID(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[pointID(m.Name+"_count", p.Attributes)] = float64(p.Count)
					out[pointID(m.Name+"_sum", p.Attributes)] = p.Sum
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func expect(t *testing.T, step string, got points, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: no point %s", step, k)
		} else if g != v {
			t.Errorf("%s: %s = %v, want %v", step, k, g, v)
		}
	}
}

// ended returns the ended spans named name, in the order they ended.
func (s *sdk) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range s.spans.Ended() {
		if sp.Name() == name {
			out = append(out, sp)
		}
	}
	return out
}

func attrs(sp sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, a := range sp.Attributes() {
		m[a.Key] = a.Value
	}
	return m
}

// events records the Observer's events, to compare the spans with.
type events struct {
	mu       sync.Mutex
	acquired []renewlock.AcquireEvent
	released []renewlock.ReleaseEvent
}

func (e *events) observer() *renewlock.Observer {
	return &renewlock.Observer{
		Acquired: func(ev renewlock.AcquireEvent) { e.mu.Lock(); e.acquired = append(e.acquired, ev); e.mu.Unlock() },
		Released: func(ev renewlock.ReleaseEvent) { e.mu.Lock(); e.released = append(e.released, ev); e.mu.Unlock() },
	}
}

func newClient(t *testing.T, rdb redis.UniversalClient, opts ...renewlock.Option) *renewlock.Client {
	t.Helper()
	c, err := renewlock.New(rdb, append([]renewlock.Option{quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Real locks on a real redis-server: the acquire and hold spans are
// children of the caller's span, start and end when the calls did, and
// carry key, token, queueing, hand-off and outcome (Error status for a lost
// lease); the metrics count the same events as promobserve, and the
// gauges count held and waiting locks.
func TestSpansAndMetrics(t *testing.T) {
	srv := redistest.Start(t)
	s := newSDK(t)
	tel := s.telemetry(t)
	var evs events
	c := newClient(t, srv.Client(), renewlock.WithObserver(observe.Join(tel.Observer(), evs.observer())), renewlock.WithTTL(600*time.Millisecond))
	tel.Track(c)
	operator := newClient(t, srv.Client())
	key := "traced"

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx, job := s.tp.Tracer("test").Start(ctx, "job")
	parent := job.SpanContext()

	expect(t, "at start", s.collect(t), map[string]float64{
		"renewlock.acquisitions{outcome=ok,queued=false}":           0,
		"renewlock.acquisitions{outcome=closed,queued=true}":        0,
		"renewlock.releases{handed_off=true,outcome=ok}":            0,
		"renewlock.lease.losses{cause=not_owner}":                   0,
		"renewlock.lease.losses{cause=deadline}":                    0,
		"renewlock.renewals":                                        0,
		"renewlock.held_locks":                                      0,
		"renewlock.waiting_acquires":                                0,
		"renewlock.acquisitions{outcome=not_acquired,queued=false}": 0,
	})

	l1, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("TryAcquire: %v", err)
	}
	granted := make(chan *renewlock.Lock, 1)
	go func() {
		l, err := c.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		granted <- l
	}()
	waitFor(t, "the waiter", func() bool { return c.Stats().Waiting == 1 })
	expect(t, "while one waits", s.collect(t), map[string]float64{"renewlock.held_locks": 1, "renewlock.waiting_acquires": 1})
	time.Sleep(300 * time.Millisecond) // renewals
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := <-granted
	if l2 == nil {
		t.FailNow()
	}
	if _, err := operator.ForceRelease(ctx, key); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the loss went unnoticed")
	}
	if err := l2.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Release of the lost lock: %v", err)
	}
	job.End()
	// Lost is called right after Done closes, from the renewal loop.
	waitFor(t, "the loss", func() bool { return s.collect(t)["renewlock.lease.losses{cause=not_owner}"] == 1 })

	got := s.collect(t)
	expect(t, "at the end", got, map[string]float64{
		"renewlock.acquisitions{outcome=ok,queued=false}":           1,
		"renewlock.acquisitions{outcome=ok,queued=true}":            1,
		"renewlock.acquisitions{outcome=not_acquired,queued=false}": 1,
		"renewlock.acquire.duration_count{outcome=ok,queued=true}":  1,
		"renewlock.releases{handed_off=true,outcome=ok}":            1,
		"renewlock.releases{handed_off=false,outcome=lost}":         1,
		"renewlock.releases{handed_off=false,outcome=ok}":           0,
		"renewlock.lease.losses{cause=not_owner}":                   1,
		"renewlock.held.duration_count":                             2,
		"renewlock.held_locks":                                      0,
		"renewlock.waiting_acquires":                                0,
	})
	if got["renewlock.renewals"] < 2 || got["renewlock.renewal.rtt_count"] < 1 || got["renewlock.renewal.failures"] != 0 {
		t.Errorf("renewals: %v leases in %v round trips, %v failures", got["renewlock.renewals"], got["renewlock.renewal.rtt_count"], got["renewlock.renewal.failures"])
	}
	for k := range got {
		if strings.Contains(k, "key=") {
			t.Errorf("%s has a key without WithMetricKeys", k)
		}
	}

	// Spans: children of the job, timed as the events say.
	evs.mu.Lock()
	defer evs.mu.Unlock()
	acq := s.ended(otelobserve.SpanAcquire)
	if len(acq) != 3 || len(evs.acquired) != 3 {
		t.Fatalf("%d acquire spans, %d events; want 3", len(acq), len(evs.acquired))
	}
	for i, sp := range acq {
		ev := evs.acquired[i]
		if sp.Parent().SpanID() != parent.SpanID() || sp.SpanContext().TraceID() != parent.TraceID() {
			t.Errorf("acquire span %d is not a child of the job", i)
		}
		if !sp.StartTime().Equal(ev.Start) || !sp.EndTime().Equal(ev.Start.Add(ev.Duration)) {
			t.Errorf("acquire span %d runs %v–%v, the call %v+%v", i, sp.StartTime(), sp.EndTime(), ev.Start, ev.Duration)
		}
		if sp.SpanKind() != trace.SpanKindInternal {
			t.Errorf("acquire span %d kind %v", i, sp.SpanKind())
		}
		if sp.InstrumentationScope().Name != otelobserve.ScopeName {
			t.Errorf("scope %q", sp.InstrumentationScope().Name)
		}
	}
	first, tried, queued := attrs(acq[0]), attrs(acq[1]), attrs(acq[2])
	if first["renewlock.key"].AsString() != key || first["renewlock.token"].AsInt64() != int64(l1.Token()) ||
		first["renewlock.queued"].AsBool() || first["renewlock.outcome"].AsString() != "ok" || acq[0].Status().Code != codes.Unset {
		t.Errorf("first acquire span: %v %v", first, acq[0].Status())
	}
	if _, ok := tried["renewlock.token"]; ok || tried["renewlock.outcome"].AsString() != "not_acquired" || acq[1].Status().Code != codes.Unset {
		t.Errorf("TryAcquire span (not a failure, no token): %v %v", tried, acq[1].Status())
	}
	if !queued["renewlock.queued"].AsBool() || queued["renewlock.token"].AsInt64() != int64(l2.Token()) || acq[2].EndTime().Sub(acq[2].StartTime()) < 250*time.Millisecond {
		t.Errorf("queued acquire span: %v, %v long", queued, acq[2].EndTime().Sub(acq[2].StartTime()))
	}

	hold := s.ended(otelobserve.SpanHold)
	if len(hold) != 2 {
		t.Fatalf("%d hold spans, want 2", len(hold))
	}
	for i, sp := range hold {
		if sp.Parent().SpanID() != parent.SpanID() {
			t.Errorf("hold span %d is not a child of the job", i)
		}
		// It starts when the acquisition returned.
		got := acq[[]int{0, 2}[i]]
		if d := sp.StartTime().Sub(got.EndTime()); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("hold span %d starts %v after its acquisition returned", i, d)
		}
		if !sp.EndTime().After(sp.StartTime()) || sp.EndTime().Sub(sp.StartTime()) < evs.released[i].Held-time.Millisecond {
			t.Errorf("hold span %d lasts %v, held %v", i, sp.EndTime().Sub(sp.StartTime()), evs.released[i].Held)
		}
	}
	handed, lost := attrs(hold[0]), attrs(hold[1])
	if !handed["renewlock.handed_off"].AsBool() || handed["renewlock.outcome"].AsString() != "ok" || handed["renewlock.token"].AsInt64() != int64(l1.Token()) || hold[0].Status().Code != codes.Unset {
		t.Errorf("handed-off hold span: %v %v", handed, hold[0].Status())
	}
	if lost["renewlock.outcome"].AsString() != "lost" || lost["error.type"].AsString() != "lost" || hold[1].Status().Code != codes.Error ||
		!strings.Contains(hold[1].Status().Description, "lease lost") || len(hold[1].Events()) != 1 || hold[1].Events()[0].Name != "exception" {
		t.Errorf("lost hold span: %v %v %v", lost, hold[1].Status(), hold[1].Events())
	}
}

// Feeding events straight to the Observer.
var (
	start      = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evAcquired = renewlock.AcquireEvent{Ctx: context.Background(), Key: "orders:42", Start: start, Duration: 3 * time.Millisecond, Token: 7}
	evFailed   = renewlock.AcquireEvent{Ctx: context.Background(), Key: "orders:42", Start: start, Duration: time.Second, Queued: true,
		Err: fmt.Errorf("renewlock: acquire %q: %w", "orders:42", context.DeadlineExceeded)}
	evReleased = renewlock.ReleaseEvent{Ctx: context.Background(), Key: "orders:42", Token: 7, Held: time.Second}
	evLost     = renewlock.LostEvent{Key: "orders:42", Token: 7, Cause: renewlock.LossRejected}
	evRenewed  = renewlock.RenewEvent{Leases: 4, Failed: 2, RTT: time.Millisecond}
)

// The key can be left out of spans, or hashed with a salt; either way the
// error message, which quotes it, is not recorded.
func TestSpanKeyPrivacy(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  otelobserve.Option
		salt string
	}{
		{"plain", nil, ""},
		{"omitted", otelobserve.WithoutSpanKey(), ""},
		{"hashed", otelobserve.WithHashedSpanKey([]byte("salt")), "salt"},
		{"hashed, other salt", otelobserve.WithHashedSpanKey([]byte("pepper")), "pepper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSDK(t)
			o := s.telemetry(t, tc.opt).Observer()
			o.Acquired(evFailed)
			o.Released(evReleased)
			for _, sp := range s.spans.Ended() {
				a := attrs(sp)
				key, hasKey := a["renewlock.key"]
				hash, hasHash := a["renewlock.key_hash"]
				switch tc.name {
				case "plain":
					if key.AsString() != "orders:42" || hasHash {
						t.Errorf("%s: %v", sp.Name(), a)
					}
				case "omitted":
					if hasKey || hasHash {
						t.Errorf("%s: %v", sp.Name(), a)
					}
				default:
					mac := hmac.New(sha256.New, []byte(tc.salt))
					mac.Write([]byte("orders:42"))
					if want := hex.EncodeToString(mac.Sum(nil))[:16]; hasKey || hash.AsString() != want {
						t.Errorf("%s: %v, want renewlock.key_hash=%s", sp.Name(), a, want)
					}
				}
				if a["renewlock.token"].AsInt64() != 7 && sp.Name() == otelobserve.SpanHold {
					t.Errorf("hold span token: %v", a)
				}
			}
			failed := s.ended(otelobserve.SpanAcquire)[0]
			st := failed.Status()
			if st.Code != codes.Error || attrs(failed)["error.type"].AsString() != "deadline" {
				t.Errorf("failed acquire: %v %v", st, attrs(failed))
			}
			leaks := strings.Contains(st.Description, "orders:42") || len(failed.Events()) > 0
			if leaks != (tc.name == "plain") {
				t.Errorf("status %q, events %v: the key is %s", st.Description, failed.Events(), map[bool]string{true: "there", false: "not there"}[leaks])
			}
		})
	}
}

// WithMetricKeys adds the key to the per-lock metrics for the keys listed,
// "other" for the rest.
func TestMetricKeys(t *testing.T) {
	s := newSDK(t)
	o := s.telemetry(t, otelobserve.WithMetricKeys("orders:42")).Observer()
	o.Acquired(evAcquired)
	other := evAcquired
	other.Key = "orders:43"
	o.Acquired(other)
	o.Lost(evLost)
	o.Released(evReleased)
	o.Renewed(evRenewed)
	expect(t, "metric keys", s.collect(t), map[string]float64{
		"renewlock.acquisitions{key=orders:42,outcome=ok,queued=false}":         1,
		"renewlock.acquisitions{key=other,outcome=ok,queued=false}":             1,
		"renewlock.acquire.duration_sum{key=orders:42,outcome=ok,queued=false}": 0.003,
		"renewlock.lease.losses{cause=rejected,key=orders:42}":                  1,
		"renewlock.lease.losses{cause=rejected,key=other}":                      0,
		"renewlock.releases{handed_off=false,key=orders:42,outcome=ok}":         1,
		"renewlock.held.duration_count{key=orders:42}":                          1,
		"renewlock.renewals":          4,
		"renewlock.renewal.failures":  2,
		"renewlock.renewal.rtt_count": 1,
	})
}

// Metric recording is cheap: with tracing off, a callback allocates little.
func TestMetricsAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := newSDK(t)
	tel, err := otelobserve.New(otelobserve.WithTracerProvider(tracenoop.NewTracerProvider()), otelobserve.WithMeterProvider(s.mp))
	if err != nil {
		t.Fatal(err)
	}
	o := tel.Observer()
	for name, f := range map[string]func(){
		"Acquired": func() { o.Acquired(evAcquired) },
		"Renewed":  func() { o.Renewed(evRenewed) },
		"Lost":     func() { o.Lost(evLost) },
		"Released": func() { o.Released(evReleased) },
	} {
		f()
		if n := testing.AllocsPerRun(1000, f); n > 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}
