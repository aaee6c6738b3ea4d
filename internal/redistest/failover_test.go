package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/keyslot"
)

// A Sentinel group fails over on SENTINEL FAILOVER and when its primary is
// killed; min-replicas-to-write makes a primary without replicas refuse
// writes.
func TestStartSentinels(t *testing.T) {
	start := time.Now()
	g := StartSentinels(t, SentinelConfig{})
	t.Logf("1 primary, 2 replicas, 3 sentinels ready in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, err := g.Primary(ctx)
	if err != nil || first != g.Servers()[0] {
		t.Fatalf("Primary = %v, %v; want the first server", first, err)
	}
	if p, err := g.WaitHealed(ctx); err != nil || p != first {
		t.Fatalf("WaitHealed = %v, %v; want the first server", p, err)
	}
	rdb := g.FailoverClient()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	if err := g.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := g.WaitNewPrimary(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SENTINEL FAILOVER: %s promoted in %v", second.Addr(), time.Since(start))
	// (The old primary is made a replica only some 10 s later, when a
	// Sentinel's periodic INFO sees it again: not waited for here.)
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET after the failover = %q, %v", v, err)
	}

	start = time.Now()
	second.Kill()
	third, err := g.WaitNewPrimary(ctx, second)
	if err != nil {
		for _, s := range g.Sentinels() {
			t.Log(s.Log())
		}
		t.Fatal(err)
	}
	t.Logf("primary killed: %s promoted in %v", third.Addr(), time.Since(start))
	if err := third.WaitRole(ctx, "master"); err != nil {
		t.Fatal(err)
	}

	// The new primary has at most one replica (the first primary, if
	// already reconfigured): two are required.
	if err := g.SetMinReplicas(ctx, 2, time.Second); err != nil {
		t.Fatal(err)
	}
	err = third.Client().Set(ctx, "k", "w", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("SET with fewer than 2 replicas and min-replicas-to-write 2: %v, want NOREPLICAS", err)
	}
}

// A cluster with replicas: CLUSTER FAILOVER moves a master's slots to its
// replica, and a reshard moves slots with their keys.
func TestStartClusterWithReplicas(t *testing.T) {
	start := time.Now()
	c := StartClusterWith(t, ClusterConfig{Masters: 3, Replicas: 1})
	t.Logf("3 masters with a replica each ready in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	masters, err := c.Masters(ctx)
	if err != nil || len(masters) != 3 {
		t.Fatalf("Masters = %d, %v; want 3", len(masters), err)
	}
	rdb := c.Client()
	key := "{k}x"
	slot := keyslot.Slot(key)
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	owner, err := c.SlotOwner(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.ReplicasOf(ctx, owner)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("ReplicasOf(%s) = %v, %v; want 1", owner.Addr(), replicas, err)
	}
	start = time.Now()
	if err := c.Failover(ctx, replicas[0], ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("CLUSTER FAILOVER took %v", time.Since(start))
	if err := owner.WaitRole(ctx, "slave"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("GET after CLUSTER FAILOVER = %q, %v", v, err)
	}

	// Reshard: move the first slots of the key's (new) master, the key's
	// slot among them, to another master.
	from := replicas[0]
	var to *Server
	for _, m := range masters {
		if m.Server != owner {
			to = m.Server
			break
		}
	}
	var first int
	v, err := c.View(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range v {
		if n.Myself {
			first = n.Slots[0][0]
		}
	}
	var moving string
	for i := 0; ; i++ {
		k := fmt.Sprintf("m%d", i)
		if s := keyslot.Slot(k); s >= first && s < first+5 {
			moving = k
			break
		}
	}
	if err := rdb.Set(ctx, moving, "w", 0).Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if out, err := c.Reshard(ctx, from, to, 5); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("reshard of 5 slots took %v", time.Since(start))
	if got, err := c.WaitSlotOwner(ctx, keyslot.Slot(moving), from); err != nil || got != to {
		t.Fatalf("owner of %q after the reshard: %v, %v; want %s", moving, got, err, to.Addr())
	}
	if v, err := rdb.Get(ctx, moving).Result(); err != nil || v != "w" {
		t.Fatalf("GET after the reshard = %q, %v", v, err)
	}
	err = from.Client().Get(ctx, moving).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
		t.Fatalf("GET on the old owner: %v, want MOVED", err)
	}
}
