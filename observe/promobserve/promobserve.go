// Package promobserve exports what a renewlock Client does as Prometheus
// metrics.
//
//	metrics := promobserve.New()
//	prometheus.MustRegister(metrics)
//	locks, err := renewlock.New(rdb, renewlock.WithObserver(metrics.Observer()))
//	...
//	metrics.Track(locks) // the held_locks and waiting_acquires gauges
//
// # Metrics
//
//	renewlock_acquire_duration_seconds{outcome,queued}  histogram  Acquire/TryAcquire/Do's acquisition, waiting included
//	renewlock_acquisitions_total{outcome,queued}        counter    acquisitions by outcome; queued="true": it waited in the lock's queue
//	renewlock_renewal_rtt_seconds                       histogram  round trip of each renewal batch (one per renew tick, all due leases)
//	renewlock_renewals_total                            counter    leases (held locks and waiters' places) sent for renewal
//	renewlock_renewal_failures_total                    counter    of those, renewals that failed for now and are retried
//	renewlock_lease_losses_total{cause}                 counter    leases lost: not_owner, deadline, rejected
//	renewlock_releases_total{outcome,handed_off}        counter    Release calls by outcome; handed_off="true": passed to a waiter
//	renewlock_held_duration_seconds                     histogram  from acquisition to the end of its Release
//	renewlock_held_locks                                gauge      locks held by the tracked Clients, at scrape time
//	renewlock_waiting_acquires                          gauge      Acquire calls of the tracked Clients waiting, at scrape time
//
// outcome is one of ok, not_acquired (TryAcquire found the lock held),
// canceled and deadline (the caller's context ended), permission (an ACL
// denial or failed login: ErrPermission), rejected (another error Redis
// returned that retrying cannot fix: ErrRejected), closed (the Client was
// closed) and error (anything else, e.g. Redis unreachable); a release's
// outcome is lost instead of not_acquired when the lease had been lost
// before it, which means the work under the lock may not have been
// exclusive. Every label has a fixed, small set of values. The counters
// start at zero for every combination that can happen, so rate() and
// increase() see the first event.
//
// A lease renewed in time is the normal case; a renewal that fails (Redis
// slow or unreachable) is retried until the lock's validity deadline, and a
// loss is counted once in renewlock_lease_losses_total: not_owner when a
// renewal or the release found another owner or no key (expired, or removed
// by ForceRelease), deadline when renewals kept failing until the validity
// deadline, rejected when Redis refused a renewal for good (an ACL change).
// Locks that Client.Close releases are not counted as releases.
//
// The histograms' buckets span 0.5 ms to 5 min for acquisitions, 0.1 ms to
// 2.5 s for renewal round trips, and 10 ms to a day for hold times.
//
// Lock names are usually unbounded, so no metric has a key label unless
// WithKeyLabel asks for one, for a fixed list of keys.
//
// To tell several Clients apart, give each its own Metrics and register
// them with prometheus.WrapRegistererWith(prometheus.Labels{"client": …}, reg).
package promobserve

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe/internal/outcome"
	"github.com/renewlock/renewlock/observe/internal/tracked"
)

// Histogram buckets, in seconds.
var (
	// From an uncontended acquisition (one round trip, well under a
	// millisecond on a LAN) to minutes of waiting.
	acquireBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	// From a loopback round trip to a Redis slow enough to cost leases.
	rttBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	// From a lock held for milliseconds to a day.
	heldBuckets = []float64{.01, .1, 1, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600}
)

// otherKey is the key label value of every key not in WithKeyLabel's list.
const otherKey = "other"

// An Option configures Metrics.
type Option func(*config)

type config struct {
	keys []string
}

// WithKeyLabel adds a key label to the metrics about single locks
// (acquisitions, releases, losses, hold times): the key's name for the keys
// listed, "other" for every other key. The list bounds the label's values,
// which Prometheus needs: never put unbounded names (per user, per order)
// in it. Default: no key label.
func WithKeyLabel(keys ...string) Option {
	return func(c *config) { c.keys = append(c.keys, keys...) }
}

// Metrics is a prometheus.Collector of what the Clients it observes do.
// Register it, hand Observer to the Clients (renewlock.WithObserver), and
// Track the Clients whose held and waiting locks the gauges should count.
// It is safe for concurrent use.
type Metrics struct {
	observer renewlock.Observer
	clients  tracked.Clients

	keyIndex map[string]int // key → index in keyNames; absent: 0, "other"
	keyNames []string       // nil without a key label

	acquireDuration *prometheus.HistogramVec
	acquisitions    *prometheus.CounterVec
	renewalRTT      prometheus.Histogram
	renewals        prometheus.Counter
	renewalFailures prometheus.Counter
	losses          *prometheus.CounterVec
	releases        *prometheus.CounterVec
	heldDuration    *prometheus.HistogramVec
	heldLocks       *prometheus.Desc
	waiting         *prometheus.Desc

	// The vectors' children by index, found once: the callbacks neither
	// hash label values nor allocate.
	acquireDurationOf children[prometheus.Observer] // [key][outcome][queued]
	acquisitionsOf    children[prometheus.Counter]  // [key][outcome][queued]
	lossesOf          children[prometheus.Counter]  // [key][cause]
	releasesOf        children[prometheus.Counter]  // [key][outcome][handed off]
	heldDurationOf    children[prometheus.Observer] // [key]
}

// New returns Metrics with nothing counted yet.
func New(opts ...Option) *Metrics {
	var cfg config
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	m := &Metrics{}
	var keyLabel []string
	if len(cfg.keys) > 0 {
		keyLabel = []string{"key"}
		m.keyNames = []string{otherKey}
		m.keyIndex = make(map[string]int, len(cfg.keys))
		for _, k := range cfg.keys {
			if _, dup := m.keyIndex[k]; !dup && k != otherKey {
				m.keyIndex[k] = len(m.keyNames)
				m.keyNames = append(m.keyNames, k)
			}
		}
	}
	labels := func(names ...string) []string { return append(keyLabel[:len(keyLabel):len(keyLabel)], names...) }

	m.acquireDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "renewlock_acquire_duration_seconds",
		Help:    "Time an acquisition (Acquire, TryAcquire, Do) took, waiting in the lock's queue included, by outcome.",
		Buckets: acquireBuckets,
	}, labels("outcome", "queued"))
	m.acquisitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "renewlock_acquisitions_total",
		Help: "Acquisitions (Acquire, TryAcquire, Do) by outcome; queued=\"true\" for those that waited in the lock's queue.",
	}, labels("outcome", "queued"))
	m.renewalRTT = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "renewlock_renewal_rtt_seconds",
		Help:    "Round-trip time of each renewal batch: one per renew tick, renewing every due lease of the Client in one pipeline.",
		Buckets: rttBuckets,
	})
	m.renewals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "renewlock_renewals_total",
		Help: "Leases (held locks and waiters' places in lock queues) sent for renewal.",
	})
	m.renewalFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "renewlock_renewal_failures_total",
		Help: "Renewals that failed for now (Redis slow, unreachable or busy) and are retried until the lease's validity deadline.",
	})
	m.losses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "renewlock_lease_losses_total",
		Help: "Held locks whose lease was lost, by cause: not_owner (another owner or no key found), deadline (renewals failed until the validity deadline), rejected (Redis refused the renewal for good).",
	}, labels("cause"))
	m.releases = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "renewlock_releases_total",
		Help: "Release calls by outcome (lost: the lease had been lost before); handed_off=\"true\" when the lock went straight to the next waiter.",
	}, labels("outcome", "handed_off"))
	m.heldDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "renewlock_held_duration_seconds",
		Help:    "Time from an acquisition to the end of its Release.",
		Buckets: heldBuckets,
	}, labels())
	m.heldLocks = prometheus.NewDesc("renewlock_held_locks",
		"Locks held by the tracked Clients (a Release under way included).", nil, nil)
	m.waiting = prometheus.NewDesc("renewlock_waiting_acquires",
		"Acquire calls of the tracked Clients waiting for a lock.", nil, nil)

	nk := max(len(m.keyNames), 1)
	nOut := int(outcome.Count)
	m.acquireDurationOf.init(nk*nOut*2, func(i int) prometheus.Observer {
		return m.acquireDuration.WithLabelValues(m.labelValues(i/(nOut*2), outcome.Outcome(i/2%nOut).String(), strconv.FormatBool(i%2 == 1))...)
	})
	m.acquisitionsOf.init(nk*nOut*2, func(i int) prometheus.Counter {
		return m.acquisitions.WithLabelValues(m.labelValues(i/(nOut*2), outcome.Outcome(i/2%nOut).String(), strconv.FormatBool(i%2 == 1))...)
	})
	m.lossesOf.init(nk*len(outcome.Causes), func(i int) prometheus.Counter {
		return m.losses.WithLabelValues(m.labelValues(i/len(outcome.Causes), outcome.Causes[i%len(outcome.Causes)].String())...)
	})
	m.releasesOf.init(nk*nOut*2, func(i int) prometheus.Counter {
		return m.releases.WithLabelValues(m.labelValues(i/(nOut*2), outcome.Outcome(i/2%nOut).String(), strconv.FormatBool(i%2 == 1))...)
	})
	m.heldDurationOf.init(nk, func(i int) prometheus.Observer {
		return m.heldDuration.WithLabelValues(m.labelValues(i)...)
	})

	// Every counter that can move starts at zero, and so does the hold-time
	// histogram without a key label (as an unlabelled histogram would).
	for k := range nk {
		for _, o := range outcome.AcquireOutcomes {
			m.acquisitionsOf.get(acquireIndex(k, o, false))
			if o != outcome.NotAcquired { // TryAcquire never queues
				m.acquisitionsOf.get(acquireIndex(k, o, true))
			}
		}
		for _, o := range outcome.ReleaseOutcomes {
			m.releasesOf.get(releaseIndex(k, o, false))
		}
		m.releasesOf.get(releaseIndex(k, outcome.OK, true)) // only a release that worked hands off
		for i := range outcome.Causes {
			m.lossesOf.get(k*len(outcome.Causes) + i)
		}
	}
	if m.keyNames == nil {
		m.heldDurationOf.get(0)
	}

	m.observer = renewlock.Observer{
		Acquired: m.acquired,
		Renewed:  m.renewed,
		Lost:     m.lost,
		Released: m.released,
	}
	return m
}

// labelValues returns the label values for key index k followed by rest.
func (m *Metrics) labelValues(k int, rest ...string) []string {
	if m.keyNames == nil {
		return rest
	}
	return append([]string{m.keyNames[k]}, rest...)
}

// key returns the index of key's label value.
func (m *Metrics) key(key string) int {
	return m.keyIndex[key] // 0 ("other", or no key label) if absent
}

func acquireIndex(k int, o outcome.Outcome, queued bool) int {
	return (k*int(outcome.Count)+int(o))*2 + b2i(queued)
}

func releaseIndex(k int, o outcome.Outcome, handedOff bool) int {
	return (k*int(outcome.Count)+int(o))*2 + b2i(handedOff)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Observer returns the Observer to give the Clients, with
// renewlock.WithObserver (to New, or to single calls). Its callbacks only
// update counters and histograms: no allocation, no lock held.
func (m *Metrics) Observer() *renewlock.Observer { return &m.observer }

// Track makes the gauges renewlock_held_locks and renewlock_waiting_acquires
// count c's locks (c.Stats, read at scrape time), summed over every tracked
// Client. Call the returned function to stop, e.g. when c is closed; a
// Client that lives as long as the process needs no such call.
func (m *Metrics) Track(c *renewlock.Client) (untrack func()) { return m.clients.Add(c) }

func (m *Metrics) acquired(e renewlock.AcquireEvent) {
	i := acquireIndex(m.key(e.Key), outcome.Acquire(e.Err), e.Queued)
	m.acquireDurationOf.get(i).Observe(e.Duration.Seconds())
	m.acquisitionsOf.get(i).Inc()
}

func (m *Metrics) renewed(e renewlock.RenewEvent) {
	m.renewalRTT.Observe(e.RTT.Seconds())
	m.renewals.Add(float64(e.Leases))
	if e.Failed > 0 {
		m.renewalFailures.Add(float64(e.Failed))
	}
}

func (m *Metrics) lost(e renewlock.LostEvent) {
	c := int(e.Cause) - 1 // LossNotOwner is 1
	if c < 0 || c >= len(outcome.Causes) {
		return // a cause this version does not know
	}
	m.lossesOf.get(m.key(e.Key)*len(outcome.Causes) + c).Inc()
}

func (m *Metrics) released(e renewlock.ReleaseEvent) {
	k := m.key(e.Key)
	m.releasesOf.get(releaseIndex(k, outcome.Release(e.Err), e.HandedOff)).Inc()
	if e.Held > 0 {
		m.heldDurationOf.get(k).Observe(e.Held.Seconds())
	}
}

// Describe sends the descriptions of all the metrics.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.acquireDuration.Describe(ch)
	m.acquisitions.Describe(ch)
	m.renewalRTT.Describe(ch)
	m.renewals.Describe(ch)
	m.renewalFailures.Describe(ch)
	m.losses.Describe(ch)
	m.releases.Describe(ch)
	m.heldDuration.Describe(ch)
	ch <- m.heldLocks
	ch <- m.waiting
}

// Collect sends the current values, reading the tracked Clients' Stats for
// the gauges.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.acquireDuration.Collect(ch)
	m.acquisitions.Collect(ch)
	m.renewalRTT.Collect(ch)
	m.renewals.Collect(ch)
	m.renewalFailures.Collect(ch)
	m.losses.Collect(ch)
	m.releases.Collect(ch)
	m.heldDuration.Collect(ch)
	st := m.clients.Stats()
	ch <- prometheus.MustNewConstMetric(m.heldLocks, prometheus.GaugeValue, float64(st.Held))
	ch <- prometheus.MustNewConstMetric(m.waiting, prometheus.GaugeValue, float64(st.Waiting))
}

// children caches the children of a metric vector by index: the first use
// of an index makes the child (hashing its label values), later ones load
// it with one atomic read.
type children[T any] struct {
	cache []atomic.Pointer[T]
	make  func(i int) T
}

func (c *children[T]) init(n int, mk func(i int) T) {
	c.cache = make([]atomic.Pointer[T], n)
	c.make = mk
}

func (c *children[T]) get(i int) T {
	if p := c.cache[i].Load(); p != nil {
		return *p
	}
	v := c.make(i)
	if !c.cache[i].CompareAndSwap(nil, &v) {
		return *c.cache[i].Load() // the same child, found by another caller
	}
	return v
}
