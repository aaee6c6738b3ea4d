package renewlock_test

// Grants on shard channels (shard.go) on a real Redis Cluster: a release
// reaches the waiter through its slot's shard only, and keeps reaching it
// when the slot moves to another master (resharding, failover).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/keyslot"
	"github.com/renewlock/renewlock/internal/redistest"
)

// clusterStat reads a counter of CLUSTER INFO on s.
func clusterStat(t *testing.T, ctx context.Context, s *redistest.Server, name string) int64 {
	t.Helper()
	rdb := s.Client()
	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0 // not counted yet
}

// shardChannels returns the shard channels s has subscribers on.
func shardChannels(t *testing.T, ctx context.Context, s *redistest.Server) []string {
	t.Helper()
	chans, err := s.Client().PubSubShardChannels(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return chans
}

// handOff has a hold the key while b waits for it, then releases it, and
// returns how long b took to get it after the release began.
func handOff(t *testing.T, ctx context.Context, a, b *renewlock.Client, rdb redis.Cmdable, key string, between func()) time.Duration {
	t.Helper()
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *renewlock.Lock, 1)
	go func() {
		l, err := b.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitFor(t, 10*time.Second, "the waiter in the queue", func() bool { return queued(t, rdb, renewlock.DefaultKeyPrefix+key) == 1 })
	if between != nil {
		between()
	}
	start := time.Now()
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lb := <-got
	took := time.Since(start)
	if lb == nil {
		t.FailNow()
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("token %d after %d", lb.Token(), la.Token())
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	return took
}

// Renewals every 3.3 s (TTL 10 s): a waiter that got no message would
// learn of its grant only at its next renewal, seconds later.
const byMessage = time.Second

// GUARANTEES.md / README "Topologies": on a Cluster, a release reaches the
// waiter on its shard channel: no other master receives anything, and the
// waiter gets the lock at once.
func TestClusterGrantsOnShardChannels(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	ctx := ctxT(t, time.Minute)
	a, b := newClient(t, c.Client()), newClient(t, c.Client())
	key := uniqueKey(t)
	slot := keyslot.Slot(renewlock.DefaultKeyPrefix + key)
	owner, err := c.SlotOwner(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	rdb := c.Client()
	handOff(t, ctx, a, b, rdb, key, func() {
		chans := shardChannels(t, ctx, owner)
		want := renewlock.DefaultKeyPrefix + "grant:{" + keyslot.Tag(slot) + "}"
		if len(chans) != 1 || !strings.HasPrefix(chans[0], want) {
			t.Errorf("shard channels on the key's master: %q, want one %q…", chans, want)
		}
		for _, s := range c.Nodes() {
			if s != owner && len(shardChannels(t, ctx, s)) > 0 {
				t.Errorf("a shard channel on %s, which does not serve the key", s.Addr())
			}
		}
	})

	before := map[*redistest.Server]int64{}
	for _, s := range c.Nodes() {
		before[s] = clusterStat(t, ctx, s, "cluster_stats_messages_publish_received") + clusterStat(t, ctx, s, "cluster_stats_messages_publish_sent")
	}
	var slowest time.Duration
	const rounds = 20
	for i := range rounds {
		x, y := a, b
		if i%2 == 1 {
			x, y = b, a
		}
		slowest = max(slowest, handOff(t, ctx, x, y, rdb, key, nil))
	}
	for _, s := range c.Nodes() {
		after := clusterStat(t, ctx, s, "cluster_stats_messages_publish_received") + clusterStat(t, ctx, s, "cluster_stats_messages_publish_sent")
		if d := after - before[s]; d != 0 {
			t.Errorf("%s sent or received %d publish messages on the cluster bus in %d hand-offs", s.Addr(), d, rounds)
		}
	}
	t.Logf("%d hand-offs between clients, slowest %v; no publish crossed the cluster bus", rounds, slowest.Round(time.Microsecond))
	if slowest > byMessage {
		t.Errorf("a hand-off took %v: the grant did not come by message", slowest)
	}
}

// The slot of a waited-for key moves while the waiter waits: to another
// shard (resharding: the old master drops the subscription, which follows
// the slot), or to the replica of its master (CLUSTER FAILOVER). The next
// release still reaches the waiter by message.
func TestClusterShardChannelFollowsTheSlot(t *testing.T) {
	t.Run("reshard", func(t *testing.T) {
		c := redistest.StartCluster(t, 3)
		ctx := ctxT(t, 2*time.Minute)
		masters, err := c.Masters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		from, to := masters[0], masters[1]
		slot := from.Slots[0][0] // redis-cli moves the first slots of from
		key := "moving{" + keyslot.Tag(slot) + "}"
		a, b := newClient(t, c.Client()), newClient(t, c.Client())
		took := handOff(t, ctx, a, b, c.Client(), key, func() {
			if _, err := c.Reshard(ctx, from.Server, to.Server, 1); err != nil {
				t.Fatal(err)
			}
			if owner, _ := c.SlotOwner(ctx, slot); owner != to.Server {
				t.Fatalf("slot %d still on %v", slot, owner)
			}
			waitFor(t, 10*time.Second, "the grant channel on the slot's new master", func() bool { return len(shardChannels(t, ctx, to.Server)) == 1 })
		})
		t.Logf("after the slot moved, the waiter got the lock %v after the release", took.Round(time.Microsecond))
		if took > byMessage {
			t.Errorf("hand-off took %v after the slot moved: the grant did not come by message", took)
		}
	})
	t.Run("failover", func(t *testing.T) {
		c := redistest.StartClusterWith(t, redistest.ClusterConfig{Masters: 3, Replicas: 1})
		ctx := ctxT(t, 2*time.Minute)
		key := uniqueKey(t)
		slot := keyslot.Slot(renewlock.DefaultKeyPrefix + key)
		master, err := c.SlotOwner(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		replicas, err := c.ReplicasOf(ctx, master)
		if err != nil || len(replicas) != 1 {
			t.Fatalf("replicas of %s: %v, %v", master.Addr(), replicas, err)
		}
		a, b := newClient(t, c.Client()), newClient(t, c.Client())
		took := handOff(t, ctx, a, b, c.Client(), key, func() {
			if err := c.Failover(ctx, replicas[0], ""); err != nil {
				t.Fatal(err)
			}
			// The old master, now a replica, keeps the subscription
			// (Redis 7.0 does not drop it), until the waiter's client
			// learns of the failover — at its next renewal, by MOVED.
			waitFor(t, 10*time.Second, "the grant channel on the promoted replica", func() bool { return len(shardChannels(t, ctx, replicas[0])) == 1 })
		})
		t.Logf("after CLUSTER FAILOVER, the waiter got the lock %v after the release", took.Round(time.Microsecond))
		if took > byMessage {
			t.Errorf("hand-off took %v after the failover: the grant did not come by message", took)
		}
	})
}

// A randomized run on a Cluster with slots' grant channels reaped almost at
// once (idle 1 ms instead of 30 s), so that reaping races with waiters
// arriving, waiting, giving up and being granted: 3 Clients × 8 goroutines
// on 12 keys in 12 slots across the 3 masters, Acquire with deadlines of
// 0–5 ms or 800 ms, holds of 0–2 ms, Release with a context already
// cancelled, of 1 ms or of 1 s, and Clients closed at random moments and
// replaced; a third of the way in, the slot of one key moves to another
// master (its waiters' subscriptions follow it). It checks: no two holders of a key with Done open outside
// Release; every Acquire returns by its deadline + 1 s, with a lock, an
// error wrapping its ctx's, or ErrClientClosed; waits that end in a grant
// happen; every key is free within TTL + 500 ms after the run; no
// goroutine is left (TestMain's goleak).
func TestClusterShardStress(t *testing.T) {
	defer renewlock.SetShardIdleForTest(time.Millisecond)()
	c := redistest.StartCluster(t, 3)
	ctx := ctxT(t, 2*time.Minute)
	const ttl = time.Second
	var keys []string
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		m := masters[i%len(masters)]
		slot := m.Slots[0][0] + i
		keys = append(keys, fmt.Sprintf("stress%d{%s}", i, keyslot.Tag(slot)))
	}
	type holding struct {
		l         *renewlock.Lock
		releasing atomic.Bool
	}
	var mu sync.Mutex
	held := map[string][]*holding{}
	var violations atomic.Int64
	var granted, gaveUp, acquired atomic.Int64
	violate := func(format string, args ...any) {
		violations.Add(1)
		t.Errorf(format, args...)
	}

	dur := 6 * time.Second
	if testing.Short() {
		dur = 3 * time.Second
	}
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	var clientsMu sync.Mutex
	clients := make([]*renewlock.Client, 3)
	for i := range clients {
		clients[i] = newClient(t, c.Client(), renewlock.WithTTL(ttl))
	}
	pick := func(rng *rand.Rand) *renewlock.Client {
		clientsMu.Lock()
		defer clientsMu.Unlock()
		return clients[rng.IntN(len(clients))]
	}
	wg.Go(func() { // moves the slot of keys[0] to another master mid-run
		time.Sleep(dur / 3)
		if _, err := c.Reshard(ctx, masters[0].Server, masters[1].Server, 1); err != nil {
			t.Errorf("reshard: %v", err)
			return
		}
		t.Logf("slot %d moved at %v", masters[0].Slots[0][0], dur/3)
	})
	wg.Go(func() { // closes a Client now and then, and replaces it
		rng := rand.New(rand.NewPCG(1, 2))
		for time.Now().Before(stop) {
			time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond)
			clientsMu.Lock()
			i := rng.IntN(len(clients))
			old := clients[i]
			clients[i] = newClient(t, c.Client(), renewlock.WithTTL(ttl))
			clientsMu.Unlock()
			_ = old.Close()
		}
	})
	for g := range 24 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for time.Now().Before(stop) {
				cl := pick(rng)
				key := keys[rng.IntN(len(keys))]
				wait := 800 * time.Millisecond
				if rng.IntN(2) == 0 {
					wait = time.Duration(rng.IntN(5000)) * time.Microsecond
				}
				actx, cancel := context.WithTimeout(ctx, wait)
				start := time.Now()
				l, err := cl.Acquire(actx, key)
				took := time.Since(start)
				cancel()
				if took > wait+time.Second {
					violate("Acquire(%s) with a %v deadline returned after %v", key, wait, took)
				}
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, renewlock.ErrClientClosed) {
						violate("Acquire(%s): unexpected error %v", key, err)
					}
					gaveUp.Add(1)
					continue
				}
				acquired.Add(1)
				if took > time.Millisecond {
					granted.Add(1) // most likely waited
				}
				h := &holding{l: l}
				mu.Lock()
				for _, o := range held[key] {
					if !o.releasing.Load() && !isDone(o.l) {
						violate("%s obtained (token %d) while token %d is held", key, l.Token(), o.l.Token())
					}
				}
				held[key] = append(held[key], h)
				mu.Unlock()
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				h.releasing.Store(true)
				var rctx context.Context
				var rcancel context.CancelFunc
				switch rng.IntN(3) {
				case 0:
					rctx, rcancel = context.WithCancel(ctx)
					rcancel()
				case 1:
					rctx, rcancel = context.WithTimeout(ctx, time.Millisecond)
				default:
					rctx, rcancel = context.WithTimeout(ctx, time.Second)
				}
				err = l.Release(rctx)
				rcancel()
				if errors.Is(err, renewlock.ErrLeaseLost) {
					violate("%s: lease lost without a fault: %v", key, err)
				}
				mu.Lock()
				held[key] = slices.DeleteFunc(held[key], func(o *holding) bool { return o == h })
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Every key ends free: released, or left to its lease after a Release
	// whose context ended (or a Close).
	rdb := c.Client()
	deadline := time.Now().Add(ttl + 500*time.Millisecond)
	for _, key := range keys {
		for {
			owner, err := rdb.HGet(ctx, renewlock.DefaultKeyPrefix+key, "o").Result()
			if errors.Is(err, redis.Nil) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				violate("%s still held by %s after the run", key, owner)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	clientsMu.Lock()
	shards := 0
	for _, cl := range clients {
		shards += renewlock.ShardsForTest(cl)
	}
	clientsMu.Unlock()
	t.Logf("%d acquisitions (%d after more than 1 ms), %d gave up or closed; %d shard channels open at the end; %d violations",
		acquired.Load(), granted.Load(), gaveUp.Load(), shards, violations.Load())
	if granted.Load() == 0 {
		t.Error("no acquisition waited: the run did not exercise grants")
	}
}

func isDone(l *renewlock.Lock) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

// README "Least privilege" on a Cluster: with the README's lock user's
// rights (plus reading the slot map) grants use classic channels; a user
// who may run COMMAND but not SSUBSCRIBE falls back to them; one who
// may also SSUBSCRIBE and SPUBLISH gets shard channels. Waiters are woken
// by message in every case.
func TestClusterShardChannelsACL(t *testing.T) {
	locker := readmeACL(t)["locker"]
	c := redistest.StartCluster(t, 3)
	ctx := ctxT(t, time.Minute)
	nodes := c.Nodes()
	for _, tc := range []struct {
		name  string
		extra []string
		shard bool
	}{
		{"README rights", nil, false},
		{"COMMAND without SSUBSCRIBE", []string{"+command"}, false},
		{"shard channels", []string{"+command", "+ssubscribe", "+spublish"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "locker" + strconv.Itoa(int(keySeq.Add(1)))
			args := append(slices.Clone(locker), "+cluster|slots", "+cluster|shards", "+cluster|nodes")
			args = append(args, tc.extra...)
			args[2] = user
			for _, n := range nodes {
				setUser(t, n.Client(), args, "")
			}
			login := func() *redis.ClusterClient {
				return c.Client(func(o *redis.ClusterOptions) { o.Username, o.Password = user, "pw" })
			}
			a, b := newClient(t, login()), newClient(t, login())
			key := uniqueKey(t)
			var took time.Duration
			for i := range 3 {
				took = max(took, handOff(t, ctx, a, b, c.Client(), key, func() {
					if i > 0 {
						return
					}
					shard, classic := len(grantSubscribedOn(t, nodes, true)), len(grantSubscribedOn(t, nodes, false))
					if tc.shard && (shard != 1 || classic != 0) || !tc.shard && (shard != 0 || classic != 1) {
						t.Errorf("grant channels subscribed: %d shard, %d classic; want shard channels: %v", shard, classic, tc.shard)
					}
				}))
			}
			t.Logf("slowest of 3 hand-offs: %v", took.Round(time.Microsecond))
			if took > byMessage {
				t.Errorf("a hand-off took %v: the grant did not come by message", took)
			}
		})
	}
}
