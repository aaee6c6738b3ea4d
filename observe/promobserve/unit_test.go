package promobserve_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe/promobserve"
)

func gather(t *testing.T, m *promobserve.Metrics) series {
	t.Helper()
	reg := prometheus.NewPedanticRegistry() // also checks Describe against Collect
	reg.MustRegister(m)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return flatten(fams)
}

// Events to feed an Observer directly.
var (
	evAcquired = renewlock.AcquireEvent{Ctx: context.Background(), Key: "a", Start: time.Now(), Duration: 3 * time.Millisecond, Queued: true, Token: 7}
	evRenewed  = renewlock.RenewEvent{Leases: 3, Failed: 1, RTT: 2 * time.Millisecond}
	evLost     = renewlock.LostEvent{Key: "a", Token: 7, Cause: renewlock.LossDeadline, Err: renewlock.ErrLeaseLost}
	evReleased = renewlock.ReleaseEvent{Ctx: context.Background(), Key: "a", Token: 7, Held: time.Second, HandedOff: true}
)

// WithKeyLabel labels the listed keys by name and every other key as
// "other"; the per-round-trip renewal metrics have no key.
func TestKeyLabel(t *testing.T) {
	m := promobserve.New(promobserve.WithKeyLabel("a", "a", "other"))
	o := m.Observer()
	o.Acquired(evAcquired)
	b := evAcquired
	b.Key, b.Err, b.Queued = "b", fmt.Errorf("wrapped: %w", renewlock.ErrNotAcquired), false
	o.Acquired(b)
	o.Lost(evLost)
	o.Released(evReleased)
	rb := evReleased
	rb.Key, rb.HandedOff, rb.Err = "b", false, fmt.Errorf("x: %w", context.DeadlineExceeded)
	o.Released(rb)
	o.Renewed(evRenewed)

	expect(t, "key label", gather(t, m), map[string]float64{
		id("renewlock_acquisitions_total", "key", "a", "outcome", "ok", "queued", "true"):                1,
		id("renewlock_acquisitions_total", "key", "other", "outcome", "not_acquired", "queued", "false"): 1,
		id("renewlock_acquisitions_total", "key", "other", "outcome", "ok", "queued", "false"):           0,
		id("renewlock_acquire_duration_seconds_count", "key", "a", "outcome", "ok", "queued", "true"):    1,
		id("renewlock_acquire_duration_seconds_sum", "key", "a", "outcome", "ok", "queued", "true"):      0.003,
		id("renewlock_lease_losses_total", "cause", "deadline", "key", "a"):                              1,
		id("renewlock_lease_losses_total", "cause", "deadline", "key", "other"):                          0,
		id("renewlock_releases_total", "handed_off", "true", "key", "a", "outcome", "ok"):                1,
		id("renewlock_releases_total", "handed_off", "false", "key", "other", "outcome", "deadline"):     1,
		id("renewlock_held_duration_seconds_count", "key", "a"):                                          1,
		id("renewlock_held_duration_seconds_count", "key", "other"):                                      1,
		"renewlock_renewals_total":            3,
		"renewlock_renewal_failures_total":    1,
		"renewlock_renewal_rtt_seconds_count": 1,
	})
}

// The outcome label sorts errors into its fixed values, whatever they say.
func TestOutcomes(t *testing.T) {
	m := promobserve.New()
	o := m.Observer()
	perm := fmt.Errorf("acquire: %w", errors.Join(renewlock.ErrRejected, renewlock.ErrPermission))
	for _, err := range []error{
		nil,
		renewlock.ErrNotAcquired,
		fmt.Errorf("renewlock: acquire %q: %w", "k", context.Canceled),
		fmt.Errorf("renewlock: acquire %q: %w", "k", context.DeadlineExceeded),
		perm,
		fmt.Errorf("renewlock: acquire: %w", renewlock.ErrRejected),
		renewlock.ErrClientClosed,
		fmt.Errorf("dial tcp: connection refused"),
	} {
		ev := evAcquired
		ev.Key, ev.Err, ev.Queued = "k", err, false
		o.Acquired(ev)
	}
	for _, err := range []error{
		nil,
		fmt.Errorf("%w: key %q", renewlock.ErrLeaseLost, "k"),
		errors.Join(fmt.Errorf("%w: deadline", renewlock.ErrLeaseLost), context.DeadlineExceeded), // lost wins
		redis.ErrClosed,
	} {
		ev := evReleased
		ev.Err, ev.HandedOff = err, false
		o.Released(ev)
	}
	want := map[string]float64{}
	for _, out := range []string{"ok", "not_acquired", "canceled", "deadline", "permission", "rejected", "closed", "error"} {
		want[acq(out, "false")] = 1
	}
	want[rel("ok", "false")] = 1
	want[rel("lost", "false")] = 2
	want[rel("error", "false")] = 1
	want[rel("deadline", "false")] = 0
	expect(t, "outcomes", gather(t, m), want)
}

// A loss cause a later renewlock may add is ignored, not mislabelled.
func TestUnknownLossCause(t *testing.T) {
	m := promobserve.New()
	ev := evLost
	ev.Cause = 99
	m.Observer().Lost(ev)
	ev.Cause = 0
	m.Observer().Lost(ev)
	for k, v := range gather(t, m) {
		if v != 0 && k != "renewlock_held_duration_seconds_sum" {
			t.Errorf("%s = %v", k, v)
		}
	}
}

// The callbacks run in the Client's goroutines: once a series exists, they
// allocate nothing.
func TestCallbacksDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, opts := range [][]promobserve.Option{nil, {promobserve.WithKeyLabel("a", "b")}} {
		m := promobserve.New(opts...)
		o := m.Observer()
		calls := map[string]func(){
			"Acquired": func() { o.Acquired(evAcquired) },
			"Renewed":  func() { o.Renewed(evRenewed) },
			"Lost":     func() { o.Lost(evLost) },
			"Released": func() { o.Released(evReleased) },
		}
		for name, f := range calls {
			f() // makes the series
			if n := testing.AllocsPerRun(1000, f); n != 0 {
				t.Errorf("%s (options %d) allocates %v times per call", name, len(opts), n)
			}
		}
	}
}

// Track sums the tracked Clients' Stats, counts a Client tracked twice once,
// and stops counting it when told.
func TestTrack(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	m := promobserve.New()
	c1 := newClient(t, rdb)
	c2 := newClient(t, rdb)
	un1 := m.Track(c1)
	un1b := m.Track(c1)
	un2 := m.Track(c2)
	ctx := context.Background()
	l1, err := c1.Acquire(ctx, t.Name()+"/1")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Release(ctx)
	l2, err := c2.Acquire(ctx, t.Name()+"/2")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release(ctx)
	expect(t, "two clients", gather(t, m), map[string]float64{held: 2, waiting: 0})
	un2()
	un2() // twice is harmless
	un1()
	expect(t, "one client, tracked twice, untracked once", gather(t, m), map[string]float64{held: 1})
	un1b()
	expect(t, "none", gather(t, m), map[string]float64{held: 0})
}
