package renewlock_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redistest"
)

// Failovers of a Sentinel group (1 primary, 2 replicas, 3 Sentinels with
// quorum 2 and down-after 1 s) while locks are held and contended, by
// clients without replica acknowledgement, asking for 1 and for both
// replicas. See failover_harness_test.go for what is recorded and checked.

func sentinelVariants() []foVariant { return []foVariant{noAck(), ackN(1, 2), ackN(2, 2)} }

// sentinelRun is one fault against a new Sentinel group per round.
type sentinelRun struct {
	name        string
	ttl         time.Duration // default foTTL
	after       time.Duration // default 4 s
	minReplicas int           // min-replicas-to-write on every data node (max lag 1 s)
	variants    []foVariant   // default sentinelVariants()
	noPromotion bool          // the fault promotes no replica
	dataLost    bool          // the fault empties every node (see foScenario)
	// fault injects the fault into g, whose primary is old, and returns
	// when it began, once the Sentinels name a new primary.
	fault func(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server) time.Time
}

// run runs the scenario foRounds times and logs what each variant saw,
// and what a probe writing to the old primary directly saw: a client that
// has not noticed the failover (see probe).
func (sr sentinelRun) run(t *testing.T) {
	name := "sentinel " + sr.name
	if sr.minReplicas > 0 {
		name += fmt.Sprintf(", min-replicas-to-write %d", sr.minReplicas)
	}
	settleDialers(t)
	for round := range foRounds() {
		g := redistest.StartSentinels(t, redistest.SentinelConfig{})
		ctx := ctxT(t, 2*time.Minute)
		if sr.minReplicas > 0 {
			if err := g.SetMinReplicas(ctx, sr.minReplicas, time.Second); err != nil {
				t.Fatal(err)
			}
		}
		old, err := g.Primary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pr := startProbe(old.Client(func(o *redis.Options) { o.MaxRetries = -1 }), "probe")
		base := uniqueKey(t)
		var faultAt, promoted time.Time
		sc := foScenario{
			name:     name,
			variants: sr.variants,
			newRDB:   func() redis.UniversalClient { return g.FailoverClient() },
			key:      func(v foVariant, kind string) string { return fmt.Sprintf("%s/%s/%s", base, v.name, kind) },
			warm:     1500 * time.Millisecond,
			after:    sr.after,
			ttl:      sr.ttl,
			dataLost: sr.dataLost,
			fault: func(t *testing.T, ctx context.Context) time.Time {
				if sr.noPromotion {
					faultAt = sr.fault(t, ctx, g, old)
					promoted = faultAt
					return faultAt
				}
				prom := watchPromotion(ctx, g, old)
				faultAt = sr.fault(t, ctx, g, old)
				select {
				case promoted = <-prom:
				case <-time.After(5 * time.Second):
					t.Fatal("the Sentinels name a new primary, but no replica reports the master role")
				}
				t.Logf("a replica reported the master role %v after the fault", promoted.Sub(faultAt).Round(time.Millisecond))
				return faultAt
			},
		}
		if sc.variants == nil {
			sc.variants = sentinelVariants()
		}
		if sc.after == 0 {
			sc.after = 4 * time.Second
		}
		reports := runFailover(t, sc)
		logReports(t, round, reports)
		foResults.add(name, reports)
		replies := pr.finish()
		if !sr.noPromotion { // (a restart resets the probe's counter)
			probeReport(t, ctx, g, round, replies, faultAt, promoted)
		}
	}
	foResults.aggregate(t, name)
}

// probeReport logs what the probe's writes to the old primary became:
// every write acknowledged that the new primary does not have is lost.
func probeReport(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, round int, replies []probeReply, faultAt, promoted time.Time) {
	t.Helper()
	p, err := g.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	final, err := p.Client().Get(ctx, "probe").Int64()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	var lost, refused, readonly, failed int
	var firstLost, lastLost, firstRO time.Time
	for _, r := range replies {
		switch {
		case r.err == "" && r.value > final:
			lost++
			if firstLost.IsZero() {
				firstLost = r.at
			}
			lastLost = r.at
		case r.err == "NOREPLICAS":
			refused++
		case r.err == "READONLY":
			readonly++
			if firstRO.IsZero() {
				firstRO = r.at
			}
		case r.err != "":
			failed++
		}
	}
	rel := func(at time.Time) string {
		return fmt.Sprintf("%v after the fault, %v after the promotion", at.Sub(faultAt).Round(time.Millisecond), at.Sub(promoted).Round(time.Millisecond))
	}
	window := ""
	if lost > 0 {
		window = fmt.Sprintf(": the first %s, the last %s", rel(firstLost), rel(lastLost))
	}
	demoted := "not within the run"
	if !firstRO.IsZero() {
		demoted = rel(firstRO)
	}
	t.Logf("round %d: probe on the old primary: %d writes acknowledged and lost%s; %d refused (NOREPLICAS), %d failed (no answer); it turned replica (READONLY): %s",
		round+1, lost, window, refused, failed, demoted)
}

// waitNewPrimary waits for the Sentinels to promote a replica of old.
func waitNewPrimary(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server, since time.Time) *redistest.Server {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := g.WaitNewPrimary(wctx, old)
	if err != nil {
		for _, s := range g.Sentinels() {
			t.Logf("sentinel %s log:\n%s", s.Addr(), s.Log())
		}
		t.Fatal(err)
	}
	t.Logf("the Sentinels named %s primary %v after the fault", p.Addr(), time.Since(since).Round(time.Millisecond))
	return p
}

// SENTINEL FAILOVER: the Sentinel promotes a replica while the primary is
// healthy; the old primary is reconfigured as a replica only once a
// Sentinel sees it again (several seconds later), and keeps serving
// writes of clients still connected to it until then.
func TestFailoverSentinelManual(t *testing.T) {
	sentinelRun{name: "SENTINEL FAILOVER", fault: sentinelFailover}.run(t)
}

// The same with leases of 10 s (the default): the promoted replica's
// copies outlast the seconds the clients take to switch. Only with
// RENEWLOCK_FAILOVER_LONG=1 (it adds 12 s a round).
func TestFailoverSentinelManualDefaultTTL(t *testing.T) {
	if !foLong() {
		t.Skip("a long measurement: set RENEWLOCK_FAILOVER_LONG=1")
	}
	sentinelRun{name: "SENTINEL FAILOVER, TTL 10 s", ttl: 10 * time.Second, after: 8 * time.Second, fault: sentinelFailover}.run(t)
}

func sentinelFailover(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server) time.Time {
	at := time.Now()
	if err := g.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	waitNewPrimary(t, ctx, g, old, at)
	return at
}

// The primary is killed. Leases of 10 s (the default) outlive the failover
// (about 2.5 s here), so holders can keep their locks on the new primary.
func TestFailoverSentinelKill(t *testing.T) {
	sentinelRun{name: "primary killed", ttl: 10 * time.Second, after: 6 * time.Second,
		fault: func(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server) time.Time {
			at := time.Now()
			old.Kill()
			waitNewPrimary(t, ctx, g, old, at)
			return at
		}}.run(t)
}

// The primary is killed while both replicas lag behind it by 3 s (they are
// paused and cut off from it, then resumed after the kill): the replica
// promoted lacks the primary's last 3 s of renewals and acquisitions, and
// its copies of leases of 5 s end before the failover does.
func TestFailoverSentinelKillLagging(t *testing.T) {
	sentinelRun{name: "primary killed, replicas 3 s behind", ttl: 5 * time.Second, after: 6 * time.Second,
		fault: func(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server) time.Time {
			var replicas []*redistest.Server
			for _, s := range g.Servers() {
				if s != old {
					replicas = append(replicas, s)
				}
			}
			for _, r := range replicas {
				r.Pause()
			}
			if err := old.DisconnectReplicas(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			at := time.Now()
			old.Kill()
			for _, r := range replicas {
				r.Resume()
			}
			waitNewPrimary(t, ctx, g, old, at)
			return at
		}}.run(t)
}

// The primary is frozen (SIGSTOP) until the Sentinels have promoted a
// replica, then resumed: it comes back still a primary, runs what clients
// had sent it meanwhile, and serves until a Sentinel reconfigures it as a
// replica.
func TestFailoverSentinelFreeze(t *testing.T) {
	sentinelRun{name: "primary frozen past down-after", fault: sentinelFreeze}.run(t)
}

func sentinelFreeze(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server) time.Time {
	at := time.Now()
	old.Pause()
	waitNewPrimary(t, ctx, g, old, at)
	old.Resume()
	t.Logf("old primary resumed %v after the freeze", time.Since(at).Round(time.Millisecond))
	return at
}

// watchPromotion polls the replicas of old every 10 ms until one reports
// the master role, and sends the moment on the channel returned.
func watchPromotion(ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			for _, s := range g.Servers() {
				if s == old || !s.Running() {
					continue
				}
				if role, err := s.Role(ctx); err == nil && role == "master" {
					ch <- time.Now()
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(ch)
	}()
	return ch
}

// probe INCRs a key on one server every 5 ms, and records what each reply
// was: the value, or the error's first word.
type probe struct {
	mu      sync.Mutex
	replies []probeReply
	stop    chan struct{}
	done    chan struct{}
}

type probeReply struct {
	at    time.Time
	value int64
	err   string
}

func startProbe(rdb *redis.Client, key string) *probe {
	p := &probe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			v, err := rdb.Incr(ctx, key).Result()
			cancel()
			r := probeReply{at: time.Now(), value: v}
			if err != nil {
				r.err, _, _ = strings.Cut(err.Error(), " ")
			}
			p.mu.Lock()
			p.replies = append(p.replies, r)
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *probe) finish() []probeReply {
	close(p.stop)
	<-p.done
	return p.replies
}

// min-replicas-to-write 1 (max lag 1 s) on every data node: a primary
// that has lost its replicas refuses writes (NOREPLICAS, which renewlock
// retries as transient). Compare with TestFailoverSentinelManual and
// TestFailoverSentinelFreeze, the same faults without it.
func TestFailoverSentinelMinReplicas(t *testing.T) {
	t.Run("SENTINEL FAILOVER", func(t *testing.T) {
		sentinelRun{name: "SENTINEL FAILOVER", minReplicas: 1, fault: sentinelFailover}.run(t)
	})
	t.Run("primary frozen", func(t *testing.T) {
		sentinelRun{name: "primary frozen past down-after", minReplicas: 1, fault: sentinelFreeze}.run(t)
	})
}

// The primary is killed and restarted at once, empty (no persistence),
// before the Sentinels count it down: it stays the primary, and its
// replicas resynchronize from it, so every node loses every lock.
func TestFailoverSentinelRestart(t *testing.T) {
	sentinelRun{name: "primary restarted empty", noPromotion: true, dataLost: true,
		fault: func(t *testing.T, ctx context.Context, g *redistest.SentinelGroup, old *redistest.Server) time.Time {
			at := time.Now()
			old.Restart()
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := old.WaitReplicasOnline(wctx, 2); err != nil {
				t.Fatal(err)
			}
			if p, err := g.Primary(ctx); err != nil || p != old {
				t.Fatalf("after a restart within down-after the primary is %v (%v), want %s", p, err, old.Addr())
			}
			t.Logf("restarted primary back with its replicas resynchronized %v after the kill", time.Since(at).Round(time.Millisecond))
			return at
		}}.run(t)
}
