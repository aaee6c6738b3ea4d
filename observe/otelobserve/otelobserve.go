// Package otelobserve reports what a renewlock Client does to
// OpenTelemetry: a span per acquisition and per hold, and metrics through
// the OTel metric API.
//
//	tel, err := otelobserve.New() // the global TracerProvider and MeterProvider
//	if err != nil { ... }
//	locks, err := renewlock.New(rdb, renewlock.WithObserver(tel.Observer()))
//	...
//	tel.Track(locks) // the held_locks and waiting_acquires instruments
//
// # Spans
//
// renewlock.acquire covers one Acquire, TryAcquire or Do's acquisition,
// waiting included: it starts when the call began and ends when it
// returned, as a child of the span in the caller's context. renewlock.hold
// covers a held lock, from its acquisition to the end of its Release, as a
// child of the span in Release's context (for Do, the context given to Do).
// Both are internal spans; the Redis commands below them are go-redis's to
// trace (redisotel).
//
// Attributes: renewlock.key (the lock's name; WithHashedSpanKey puts a
// keyed hash in renewlock.key_hash instead, WithoutSpanKey leaves it out),
// renewlock.token (the fencing token, once acquired), renewlock.queued
// (acquire: it waited in the lock's queue), renewlock.handed_off (hold: the
// release passed the lock straight to the next waiter) and renewlock.outcome,
// with error.type set to the outcome on failure. The status is Error for
// every outcome but ok and not_acquired (a TryAcquire that found the lock
// held got an answer, not a failure); a hold whose lease was lost ends with
// outcome lost and an Error status, since the work under the lock may not
// have been exclusive. The error's message is recorded only when the key
// is, because it names the key.
//
// # Metrics
//
// The instruments carry the same information under the names that OTel's
// Prometheus exporter turns into package promobserve's metric names, with
// the same attributes as promobserve's labels, so dashboards and alerts work
// with either:
//
//	renewlock.acquire.duration   histogram, s               outcome, queued
//	renewlock.acquisitions       counter, {acquisition}     outcome, queued
//	renewlock.renewal.rtt        histogram, s               (one per renewal round trip)
//	renewlock.renewals           counter, {lease}           leases sent for renewal
//	renewlock.renewal.failures   counter, {lease}           renewals that failed for now (retried)
//	renewlock.lease.losses       counter, {lease}           cause: not_owner, deadline, rejected
//	renewlock.releases           counter, {release}         outcome, handed_off
//	renewlock.held.duration      histogram, s               from acquisition to the end of its Release
//	renewlock.held_locks         updowncounter, {lock}      locks held by the tracked Clients
//	renewlock.waiting_acquires   updowncounter, {acquire}   Acquire calls of the tracked Clients waiting
//
// The outcomes are those of promobserve: ok, not_acquired, lost (releases),
// canceled, deadline, permission, rejected, closed, error. The histograms
// advise promobserve's bucket boundaries. Metric attributes have no key
// unless WithMetricKeys asks for one, for a fixed list of keys: lock names
// are usually unbounded, and each is a time series.
package otelobserve

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe/internal/outcome"
	"github.com/renewlock/renewlock/observe/internal/tracked"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/renewlock/renewlock/observe/otelobserve"

// Span names.
const (
	SpanAcquire = "renewlock.acquire"
	SpanHold    = "renewlock.hold"
)

// otherKey is the key attribute of every key not in WithMetricKeys' list.
const otherKey = "other"

// Bucket boundaries advised for the histograms, in seconds: promobserve's.
var (
	acquireBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	rttBuckets     = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	heldBuckets    = []float64{.01, .1, 1, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600}
)

type keyMode uint8

const (
	keyPlain keyMode = iota
	keyHashed
	keyOmitted
)

// An Option configures Telemetry.
type Option func(*config)

type config struct {
	tp         trace.TracerProvider
	mp         metric.MeterProvider
	keyMode    keyMode
	salt       []byte
	metricKeys []string
}

// WithTracerProvider sets where spans go. Default: otel.GetTracerProvider()
// at New. The TracerProvider of go.opentelemetry.io/otel/trace/noop turns
// tracing off, and then the callbacks allocate nothing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets where metrics go. Default: otel.GetMeterProvider()
// at New. A metric.MeterProvider from go.opentelemetry.io/otel/metric/noop
// turns metrics off, e.g. to trace with OTel and count with promobserve
// (see observe.Join).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithoutSpanKey leaves the lock's name out of spans (and the error
// messages, which quote it). Default: the name in renewlock.key.
func WithoutSpanKey() Option {
	return func(c *config) { c.keyMode = keyOmitted }
}

// WithHashedSpanKey puts, instead of the lock's name, the first 16 hex
// digits of its HMAC-SHA256 under salt into the attribute
// renewlock.key_hash: spans of the same lock can still be found together,
// but the name is not in the trace (nor are error messages, which quote
// it). Lock names are often easy to guess ("orders:42"), so a hash without
// a secret salt hides little. Default: the name in renewlock.key.
func WithHashedSpanKey(salt []byte) Option {
	return func(c *config) { c.keyMode, c.salt = keyHashed, append([]byte(nil), salt...) }
}

// WithMetricKeys adds a key attribute to the metrics about single locks
// (acquisitions, releases, losses, hold times): the key's name for the keys
// listed, "other" for every other key. The list bounds the attribute's
// values: never put unbounded names (per user, per order) in it. Default:
// no key attribute.
func WithMetricKeys(keys ...string) Option {
	return func(c *config) { c.metricKeys = append(c.metricKeys, keys...) }
}

// Telemetry turns a Client's Observer events into OpenTelemetry spans and
// measurements. It is safe for concurrent use.
type Telemetry struct {
	observer renewlock.Observer
	clients  tracked.Clients
	tracer   trace.Tracer // nil when tracing is off
	keyMode  keyMode
	salt     []byte

	keyIndex map[string]int // key → index in keyNames; absent: 0, "other"
	nKeys    int

	acquireDuration metric.Float64Histogram
	acquisitions    metric.Int64Counter
	renewalRTT      metric.Float64Histogram
	renewals        metric.Int64Counter
	renewalFailures metric.Int64Counter
	losses          metric.Int64Counter
	releases        metric.Int64Counter
	heldDuration    metric.Float64Histogram

	// Measurement options by index, made once so that recording neither
	// builds attribute sets nor allocates option slices.
	acquireAdd    [][]metric.AddOption    // [key][outcome][queued]
	acquireRecord [][]metric.RecordOption // [key][outcome][queued]
	lossAdd       [][]metric.AddOption    // [key][cause]
	releaseAdd    [][]metric.AddOption    // [key][outcome][handed off]
	heldRecord    [][]metric.RecordOption // [key]
}

// New returns Telemetry that reports to the configured (by default the
// global) TracerProvider and MeterProvider. It fails only if the meter
// refuses an instrument.
func New(opts ...Option) (*Telemetry, error) {
	cfg := config{}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.tp == nil {
		cfg.tp = otel.GetTracerProvider()
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	t := &Telemetry{keyMode: cfg.keyMode, salt: cfg.salt}
	switch cfg.tp.(type) {
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		// Starting a span that records nothing still allocates.
	default:
		t.tracer = cfg.tp.Tracer(ScopeName)
	}
	keyNames := []string(nil)
	if len(cfg.metricKeys) > 0 {
		keyNames = []string{otherKey}
		t.keyIndex = make(map[string]int, len(cfg.metricKeys))
		for _, k := range cfg.metricKeys {
			if _, dup := t.keyIndex[k]; !dup && k != otherKey {
				t.keyIndex[k] = len(keyNames)
				keyNames = append(keyNames, k)
			}
		}
	}
	t.nKeys = max(len(keyNames), 1)

	meter := cfg.mp.Meter(ScopeName)
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	t.acquireDuration, err = meter.Float64Histogram("renewlock.acquire.duration", metric.WithUnit("s"),
		metric.WithDescription("Time an acquisition (Acquire, TryAcquire, Do) took, waiting in the lock's queue included, by outcome."),
		metric.WithExplicitBucketBoundaries(acquireBuckets...))
	check(err)
	t.acquisitions, err = meter.Int64Counter("renewlock.acquisitions", metric.WithUnit("{acquisition}"),
		metric.WithDescription("Acquisitions (Acquire, TryAcquire, Do) by outcome; queued=true for those that waited in the lock's queue."))
	check(err)
	t.renewalRTT, err = meter.Float64Histogram("renewlock.renewal.rtt", metric.WithUnit("s"),
		metric.WithDescription("Round-trip time of each renewal batch: one per renew tick, renewing every due lease of the Client in one pipeline."),
		metric.WithExplicitBucketBoundaries(rttBuckets...))
	check(err)
	t.renewals, err = meter.Int64Counter("renewlock.renewals", metric.WithUnit("{lease}"),
		metric.WithDescription("Leases (held locks and waiters' places in lock queues) sent for renewal."))
	check(err)
	t.renewalFailures, err = meter.Int64Counter("renewlock.renewal.failures", metric.WithUnit("{lease}"),
		metric.WithDescription("Renewals that failed for now (Redis slow, unreachable or busy) and are retried until the lease's validity deadline."))
	check(err)
	t.losses, err = meter.Int64Counter("renewlock.lease.losses", metric.WithUnit("{lease}"),
		metric.WithDescription("Held locks whose lease was lost, by cause: not_owner (another owner or no key found), deadline (renewals failed until the validity deadline), rejected (Redis refused the renewal for good)."))
	check(err)
	t.releases, err = meter.Int64Counter("renewlock.releases", metric.WithUnit("{release}"),
		metric.WithDescription("Release calls by outcome (lost: the lease had been lost before); handed_off=true when the lock went straight to the next waiter."))
	check(err)
	t.heldDuration, err = meter.Float64Histogram("renewlock.held.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from an acquisition to the end of its Release."),
		metric.WithExplicitBucketBoundaries(heldBuckets...))
	check(err)
	heldLocks, err := meter.Int64ObservableUpDownCounter("renewlock.held_locks", metric.WithUnit("{lock}"),
		metric.WithDescription("Locks held by the tracked Clients (a Release under way included)."))
	check(err)
	waiting, err := meter.Int64ObservableUpDownCounter("renewlock.waiting_acquires", metric.WithUnit("{acquire}"),
		metric.WithDescription("Acquire calls of the tracked Clients waiting for a lock."))
	check(err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := t.clients.Stats()
		o.ObserveInt64(heldLocks, int64(st.Held))
		o.ObserveInt64(waiting, int64(st.Waiting))
		return nil
	}, heldLocks, waiting); err != nil {
		return nil, err
	}

	set := func(k int, kvs ...attribute.KeyValue) attribute.Set {
		if keyNames != nil {
			kvs = append(kvs, attribute.String("key", keyNames[k]))
		}
		return attribute.NewSet(kvs...)
	}
	nOut := int(outcome.Count)
	t.acquireAdd = make([][]metric.AddOption, t.nKeys*nOut*2)
	t.acquireRecord = make([][]metric.RecordOption, len(t.acquireAdd))
	t.releaseAdd = make([][]metric.AddOption, t.nKeys*nOut*2)
	for i := range t.acquireAdd {
		k, o, b := i/(nOut*2), outcome.Outcome(i/2%nOut), i%2 == 1
		acq := metric.WithAttributeSet(set(k, attribute.String("outcome", o.String()), attribute.Bool("queued", b)))
		t.acquireAdd[i] = []metric.AddOption{acq}
		t.acquireRecord[i] = []metric.RecordOption{acq}
		t.releaseAdd[i] = []metric.AddOption{metric.WithAttributeSet(set(k, attribute.String("outcome", o.String()), attribute.Bool("handed_off", b)))}
	}
	t.lossAdd = make([][]metric.AddOption, t.nKeys*len(outcome.Causes))
	for i := range t.lossAdd {
		t.lossAdd[i] = []metric.AddOption{metric.WithAttributeSet(set(i/len(outcome.Causes), attribute.String("cause", outcome.Causes[i%len(outcome.Causes)].String())))}
	}
	t.heldRecord = make([][]metric.RecordOption, t.nKeys)
	for k := range t.heldRecord {
		t.heldRecord[k] = []metric.RecordOption{metric.WithAttributeSet(set(k))}
	}

	// Every counter that can move starts at zero, as promobserve's do, so
	// that a rate sees the first event.
	ctx := context.Background()
	for k := range t.nKeys {
		for _, o := range outcome.AcquireOutcomes {
			t.acquisitions.Add(ctx, 0, t.acquireAdd[index(k, o, false)]...)
			if o != outcome.NotAcquired {
				t.acquisitions.Add(ctx, 0, t.acquireAdd[index(k, o, true)]...)
			}
		}
		for _, o := range outcome.ReleaseOutcomes {
			t.releases.Add(ctx, 0, t.releaseAdd[index(k, o, false)]...)
		}
		t.releases.Add(ctx, 0, t.releaseAdd[index(k, outcome.OK, true)]...)
		for c := range outcome.Causes {
			t.losses.Add(ctx, 0, t.lossAdd[k*len(outcome.Causes)+c]...)
		}
	}
	t.renewals.Add(ctx, 0)
	t.renewalFailures.Add(ctx, 0)

	t.observer = renewlock.Observer{
		Acquired: t.acquired,
		Renewed:  t.renewed,
		Lost:     t.lost,
		Released: t.released,
	}
	return t, nil
}

// index is the index of key k, outcome o and flag b (queued, handed off)
// in acquireAdd, acquireRecord and releaseAdd.
func index(k int, o outcome.Outcome, b bool) int {
	i := (k*int(outcome.Count) + int(o)) * 2
	if b {
		i++
	}
	return i
}

// Observer returns the Observer to give the Clients, with
// renewlock.WithObserver (to New, or to single calls).
func (t *Telemetry) Observer() *renewlock.Observer { return &t.observer }

// Track makes renewlock.held_locks and renewlock.waiting_acquires count c's
// locks (c.Stats, read when the metrics are collected), summed over every
// tracked Client. Call the returned function to stop, e.g. when c is
// closed; a Client that lives as long as the process needs no such call.
func (t *Telemetry) Track(c *renewlock.Client) (untrack func()) { return t.clients.Add(c) }

func (t *Telemetry) metricKey(key string) int { return t.keyIndex[key] }

func (t *Telemetry) acquired(e renewlock.AcquireEvent) {
	o := outcome.Acquire(e.Err)
	ctx := e.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	i := index(t.metricKey(e.Key), o, e.Queued)
	t.acquireDuration.Record(ctx, e.Duration.Seconds(), t.acquireRecord[i]...)
	t.acquisitions.Add(ctx, 1, t.acquireAdd[i]...)

	if t.tracer == nil {
		return
	}
	_, span := t.tracer.Start(ctx, SpanAcquire, trace.WithTimestamp(e.Start), trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 6)
		attrs = t.keyAttr(attrs, e.Key)
		attrs = append(attrs, attribute.Bool("renewlock.queued", e.Queued), attribute.String("renewlock.outcome", o.String()))
		if e.Err == nil {
			attrs = append(attrs, tokenAttr(e.Token))
		}
		span.SetAttributes(attrs...)
		t.setStatus(span, o, e.Err, o != outcome.NotAcquired)
	}
	span.End(trace.WithTimestamp(e.Start.Add(e.Duration)))
}

func (t *Telemetry) renewed(e renewlock.RenewEvent) {
	ctx := context.Background()
	t.renewalRTT.Record(ctx, e.RTT.Seconds())
	t.renewals.Add(ctx, int64(e.Leases))
	if e.Failed > 0 {
		t.renewalFailures.Add(ctx, int64(e.Failed))
	}
}

func (t *Telemetry) lost(e renewlock.LostEvent) {
	c := int(e.Cause) - 1 // LossNotOwner is 1
	if c < 0 || c >= len(outcome.Causes) {
		return // a cause this version does not know
	}
	t.losses.Add(context.Background(), 1, t.lossAdd[t.metricKey(e.Key)*len(outcome.Causes)+c]...)
}

func (t *Telemetry) released(e renewlock.ReleaseEvent) {
	// The hold runs from the acquisition (Held before the release began)
	// to the end of the release.
	end, start := time.Now(), time.Now().Add(-e.Held)
	if !e.Start.IsZero() {
		end, start = e.Start.Add(e.Duration), e.Start.Add(-e.Held)
	}
	o := outcome.Release(e.Err)
	ctx := e.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	k := t.metricKey(e.Key)
	t.releases.Add(ctx, 1, t.releaseAdd[index(k, o, e.HandedOff)]...)
	if e.Held > 0 {
		t.heldDuration.Record(ctx, e.Held.Seconds(), t.heldRecord[k]...)
	}

	if t.tracer == nil {
		return
	}
	_, span := t.tracer.Start(ctx, SpanHold, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal))
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 6)
		attrs = t.keyAttr(attrs, e.Key)
		attrs = append(attrs, tokenAttr(e.Token), attribute.Bool("renewlock.handed_off", e.HandedOff),
			attribute.String("renewlock.outcome", o.String()))
		span.SetAttributes(attrs...)
		t.setStatus(span, o, e.Err, true)
	}
	span.End(trace.WithTimestamp(end))
}

// keyAttr appends the key's attribute as configured.
func (t *Telemetry) keyAttr(attrs []attribute.KeyValue, key string) []attribute.KeyValue {
	switch t.keyMode {
	case keyPlain:
		return append(attrs, attribute.String("renewlock.key", key))
	case keyHashed:
		mac := hmac.New(sha256.New, t.salt)
		mac.Write([]byte(key))
		return append(attrs, attribute.String("renewlock.key_hash", hex.EncodeToString(mac.Sum(nil)[:8])))
	}
	return attrs
}

// tokenAttr is the fencing token as an attribute: an int64, as OTel has no
// unsigned integers (tokens are microseconds since 1970, far below 2⁶³).
func tokenAttr(token uint64) attribute.KeyValue {
	if token > math.MaxInt64 {
		return attribute.String("renewlock.token", strconv.FormatUint(token, 10))
	}
	return attribute.Int64("renewlock.token", int64(token))
}

// setStatus marks a failed operation. failure says whether the outcome, if
// not ok, is a failure (not_acquired is an answer).
func (t *Telemetry) setStatus(span trace.Span, o outcome.Outcome, err error, failure bool) {
	if o == outcome.OK || !failure {
		return
	}
	span.SetAttributes(attribute.String("error.type", o.String()))
	if t.keyMode == keyPlain && err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return
	}
	span.SetStatus(codes.Error, o.String())
}
