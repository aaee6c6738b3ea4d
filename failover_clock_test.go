//go:build linux

package renewlock_test

// The "clock offset" column of GUARANTEES.md for Sentinel and Cluster, on
// real servers whose wall clocks are moved by internal/clockshim: the
// replicas' clocks run ahead of the primary's, and a failover promotes one.
// Redis 7 replicates a key's expiry as an absolute time, so on the
// promoted replica every lease ends early by the offset: with an offset
// above what is left of a lease, the key is free the moment the replica
// takes over, and the holder learns at its next renewal there.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/clockshim"
	"github.com/renewlock/renewlock/internal/keyslot"
	"github.com/renewlock/renewlock/internal/redistest"
)

// Replicas' clocks this far ahead of their primary's, with leases shorter
// than that (and the renew interval long enough that the holder's next
// renewal comes after the clients have followed the failover).
const (
	fcAhead    = 10 * time.Second
	fcTTL      = 8 * time.Second
	fcInterval = 4 * time.Second
)

// aheadClock returns a clock fcAhead ahead of the host's.
func aheadClock(t *testing.T) *clockshim.Clock { return newClock(t, fcAhead) }

// clockFailover holds key with a, has b try for it every 5 ms from just
// after one of a's renewals, runs failover and checks what GUARANTEES.md
// says of a replica whose clock is ahead: b gets the key while a still
// believes it holds it (its deadline is its own clock's), a learns at its
// next renewal, and b's token is larger.
func clockFailover(t *testing.T, ctx context.Context, a, b *renewlock.Client, key string, renewed func(), failover func() time.Time) {
	t.Helper()
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	renewed()
	type result struct {
		l  *renewlock.Lock
		at time.Time
	}
	got := make(chan result, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			l, err := b.TryAcquire(ctx, key)
			if err == nil {
				got <- result{l, time.Now()}
				return
			}
			select {
			case <-stop:
				got <- result{}
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	faultAt := failover()
	var r result
	select {
	case r = <-got:
	case <-time.After(fcTTL):
		t.Fatal("no other client got the key within a TTL of the failover")
	}
	toldFirst := closedWithin(la.Done(), 0)
	if !closedWithin(la.Done(), fcInterval+time.Second) {
		t.Fatal("the holder was not told within a renew interval of the takeover")
	}
	told := time.Now()
	if !errors.Is(la.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("Err = %v", la.Err())
	}
	t.Logf("replicas' clocks %v ahead, TTL %v: another client got the key %v after the failover began; the holder was told %v after that",
		fcAhead, fcTTL, r.at.Sub(faultAt).Round(time.Millisecond), told.Sub(r.at).Round(time.Millisecond))
	if toldFirst {
		t.Errorf("the holder was told before the newcomer got the key: the window this test shows is gone (%v)", la.Err())
	}
	if r.l.Token() <= la.Token() {
		t.Fatalf("the newcomer's token %d is not above the old holder's %d", r.l.Token(), la.Token())
	}
	if err := r.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// clockVariants are the clients' variants: without replica ack, and (in
// long mode, RENEWLOCK_FAILOVER_LONG=1, as it needs a topology of its own)
// with an ack of one replica.
func clockVariants() []foVariant {
	if foLong() {
		return []foVariant{noAck(), ackN(1, 1)}
	}
	return []foVariant{noAck()}
}

// GUARANTEES.md: Sentinel × clock offset. SENTINEL FAILOVER to a replica
// whose clock is 10 s ahead, leases of 8 s.
func TestFailoverSentinelClockAhead(t *testing.T) {
	for _, v := range clockVariants() {
		t.Run(v.name, func(t *testing.T) {
			clk := aheadClock(t)
			g := redistest.StartSentinels(t, redistest.SentinelConfig{Env: func(i int) []string {
				if i == 0 {
					return nil // the primary keeps the host's clock
				}
				return clk.Env()
			}})
			ctx := ctxT(t, time.Minute)
			old, err := g.Primary(ctx)
			if err != nil {
				t.Fatal(err)
			}
			opts := append([]renewlock.Option{renewlock.WithTTL(fcTTL), renewlock.WithRenewInterval(fcInterval)}, v.opts...)
			a := newClient(t, g.FailoverClient(), opts...)
			b := newClient(t, g.FailoverClient(), opts...)
			key := uniqueKey(t)
			clockFailover(t, ctx, a, b, key,
				func() { justRenewed(t, ctx, old.Client(), renewlock.DefaultKeyPrefix+key) },
				func() time.Time { return sentinelFailover(t, ctx, g, old) })
		})
	}
}

// GUARANTEES.md: Cluster × clock offset. CLUSTER FAILOVER to the shard's
// replica, whose clock is 10 s ahead, leases of 8 s.
func TestFailoverClusterClockAhead(t *testing.T) {
	for _, v := range clockVariants() {
		t.Run(v.name, func(t *testing.T) {
			clk := aheadClock(t)
			const masters = 3
			c := redistest.StartClusterWith(t, redistest.ClusterConfig{Masters: masters, Replicas: 1, Env: func(i int) []string {
				if i < masters {
					return nil // masters keep the host's clock
				}
				return clk.Env()
			}})
			ctx := ctxT(t, time.Minute)
			key := uniqueKey(t)
			rkey := renewlock.DefaultKeyPrefix + key
			master, err := c.SlotOwner(ctx, keyslot.Slot(rkey))
			if err != nil {
				t.Fatal(err)
			}
			replicas, err := c.ReplicasOf(ctx, master)
			if err != nil || len(replicas) != 1 {
				t.Fatalf("replicas of %s: %v, %v", master.Addr(), replicas, err)
			}
			opts := append([]renewlock.Option{renewlock.WithTTL(fcTTL), renewlock.WithRenewInterval(fcInterval)}, v.opts...)
			a := newClient(t, c.Client(), opts...)
			b := newClient(t, c.Client(), opts...)
			clockFailover(t, ctx, a, b, key,
				func() { justRenewed(t, ctx, master.Client(), rkey) },
				func() time.Time {
					at := time.Now()
					if err := c.Failover(ctx, replicas[0], ""); err != nil {
						t.Fatal(err)
					}
					return at
				})
		})
	}
}
