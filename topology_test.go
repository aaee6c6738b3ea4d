package renewlock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// DESIGN promise 10: every topology go-redis supports. These tests run the
// library against a real 3-master Redis Cluster and a real Sentinel.

// warnLog records what a Client logs, so a test can assert that renewals
// never failed (a CROSSSLOT or NOSCRIPT error would be logged and retried).
type warnLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *warnLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *warnLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *warnLog) option() renewlock.Option {
	return renewlock.WithLogger(slog.New(slog.NewTextHandler(w, nil)))
}

// nodeFor returns the cluster node that is master for key's slot.
func nodeFor(t *testing.T, ctx context.Context, cc *redis.ClusterClient, nodes []*redistest.Server, rkey string) *redistest.Server {
	t.Helper()
	m, err := cc.MasterForKey(ctx, rkey)
	if err != nil {
		t.Fatalf("MasterForKey(%q): %v", rkey, err)
	}
	for _, n := range nodes {
		if n.Addr() == m.Options().Addr {
			return n
		}
	}
	t.Fatalf("master %s of %q is not a cluster node", m.Options().Addr, rkey)
	return nil
}

// grantSubscribedOn returns the nodes on which some client is subscribed
// to a grant channel: classic (PUBLISH) channels if shard is false, shard
// channels (SPUBLISH) if true.
func grantSubscribedOn(t *testing.T, nodes []*redistest.Server, shard bool) []*redistest.Server {
	t.Helper()
	var out []*redistest.Server
	for _, n := range nodes {
		var chans []string
		var err error
		if shard {
			chans, err = n.Client().PubSubShardChannels(context.Background(), renewlock.DefaultKeyPrefix+"grant:*").Result()
		} else {
			chans, err = n.Client().PubSubChannels(context.Background(), renewlock.DefaultKeyPrefix+"grant:*").Result()
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(chans) > 0 {
			out = append(out, n)
		}
	}
	return out
}

// noScriptErrors sums the NOSCRIPT error replies the nodes have sent.
func noScriptErrors(t *testing.T, ctx context.Context, nodes []*redistest.Server) int {
	t.Helper()
	total := 0
	for _, n := range nodes {
		info, err := n.Client().Info(ctx, "errorstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		if _, rest, ok := strings.Cut(info, "errorstat_NOSCRIPT:count="); ok {
			v, _, _ := strings.Cut(rest, "\r")
			c, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("node %s: bad errorstats line %q", n.Addr(), v)
			}
			total += c
		}
	}
	return total
}

func TestTopologyCluster(t *testing.T) {
	start := time.Now()
	cluster := redistest.StartCluster(t, 3)
	t.Logf("cluster ready in %v", time.Since(start))
	nodes := cluster.Nodes()
	rdb := cluster.Client()

	// Hundreds of keys on every node, many sharing slots (some with more
	// than one renewal chunk in one slot), stay held across several TTLs on
	// the batched renewal alone: no CROSSSLOT, no lost lease, no re-creation.
	// A SCRIPT FLUSH on every node half way exercises the NOSCRIPT fallback.
	t.Run("many keys renewed", func(t *testing.T) {
		const ttl = 500 * time.Millisecond
		var log warnLog
		c := newClient(t, rdb, renewlock.WithTTL(ttl), log.option())
		ctx := ctxT(t, 30*time.Second)
		base := uniqueKey(t)
		var keys []string
		for i := range 300 {
			keys = append(keys, fmt.Sprintf("%s/spread/%d", base, i))
		}
		for i := range 200 { // one slot, two chunks of the renewal
			keys = append(keys, fmt.Sprintf("%s/{hot}/%d", base, i))
		}
		locks := make([]*renewlock.Lock, len(keys))
		var wg sync.WaitGroup
		var failed atomic.Int32
		for g := range 8 { // concurrent callers share pipelines across nodes
			wg.Go(func() {
				for i := g; i < len(keys); i += 8 {
					l, err := c.TryAcquire(ctx, keys[i])
					if err != nil {
						t.Errorf("TryAcquire(%q): %v", keys[i], err)
						failed.Add(1)
						return
					}
					locks[i] = l
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.FailNow()
		}
		for _, n := range nodes {
			got, err := n.Client().Keys(ctx, renewlock.DefaultKeyPrefix+base+"/spread/*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < 50 {
				t.Fatalf("node %s holds %d of 300 spread keys: the test does not cover every node", n.Addr(), len(got))
			}
		}

		check := func(when string) {
			t.Helper()
			pipe := rdb.Pipeline()
			pttl := make([]*redis.DurationCmd, len(keys))
			tok := make([]*redis.StringCmd, len(keys))
			for i, k := range keys {
				pttl[i] = pipe.PTTL(ctx, renewlock.DefaultKeyPrefix+k)
				tok[i] = pipe.HGet(ctx, renewlock.DefaultKeyPrefix+k, "t")
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("%s: reading leases: %v", when, err)
			}
			minTTL := ttl
			for i, l := range locks {
				if err := l.Err(); err != nil {
					t.Fatalf("%s: lock %q: Err = %v; log:\n%s", when, keys[i], err, log.String())
				}
				if d := pttl[i].Val(); d <= 0 {
					t.Fatalf("%s: lock %q: PTTL = %v, lease not renewed", when, keys[i], d)
				} else {
					minTTL = min(minTTL, d)
				}
				if want := fmt.Sprint(l.Token()); tok[i].Val() != want {
					t.Fatalf("%s: lock %q: token in Redis %q, want %s", when, keys[i], tok[i].Val(), want)
				}
			}
			t.Logf("%s: %d locks held, lowest PTTL %v of %v", when, len(locks), minTTL, ttl)
		}
		var noscript int
		// Sleeping is the point here: the leases must outlive several TTLs.
		for round := 1; round <= 4; round++ {
			time.Sleep(ttl)
			check(fmt.Sprintf("after %d TTLs", round))
			if round == 2 {
				noscript = noScriptErrors(t, ctx, nodes)
				err := rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
					return n.ScriptFlush(ctx).Err()
				})
				if err != nil {
					t.Fatal(err)
				}
				extra, err := c.TryAcquire(ctx, base+"/after-flush")
				if err != nil {
					t.Fatalf("TryAcquire after SCRIPT FLUSH: %v", err)
				}
				defer extra.Release(ctx)
			}
		}
		if s := log.String(); s != "" {
			t.Errorf("renewal logged warnings:\n%s", s)
		}
		if n := noScriptErrors(t, ctx, nodes); n <= noscript {
			t.Errorf("no NOSCRIPT reply after SCRIPT FLUSH (%d before, %d after): the fallback was not exercised", noscript, n)
		}
		for i, l := range locks {
			if err := l.Release(ctx); err != nil {
				t.Fatalf("Release(%q): %v", keys[i], err)
			}
		}
		pipe := rdb.Pipeline()
		owned := make([]*redis.BoolCmd, len(keys))
		for i, k := range keys {
			owned[i] = pipe.HExists(ctx, renewlock.DefaultKeyPrefix+k, "o")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, cmd := range owned {
			if cmd.Val() {
				t.Fatalf("lock %q still held in Redis after Release", keys[i])
			}
		}
	})

	// Tokens go up per key on every node, whichever client acquires.
	t.Run("tokens increase", func(t *testing.T) {
		c1 := newClient(t, rdb)
		c2 := newClient(t, cluster.Client())
		ctx := ctxT(t, 20*time.Second)
		base := uniqueKey(t)
		seen := map[string]bool{}
		for i := 0; len(seen) < len(nodes); i++ {
			key := fmt.Sprintf("%s/%d", base, i)
			n := nodeFor(t, ctx, rdb, nodes, renewlock.DefaultKeyPrefix+key)
			if seen[n.Addr()] {
				continue
			}
			seen[n.Addr()] = true
			var last uint64
			for round := range 6 {
				c, other := c1, c2
				if round%2 == 1 {
					c, other = c2, c1
				}
				l, err := c.TryAcquire(ctx, key)
				if err != nil {
					t.Fatalf("node %s, round %d: %v", n.Addr(), round, err)
				}
				if l.Token() <= last {
					t.Fatalf("node %s, round %d: token %d after %d", n.Addr(), round, l.Token(), last)
				}
				last = l.Token()
				if _, err := other.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
					t.Fatalf("node %s: second client's TryAcquire on a held key: %v, want ErrNotAcquired", n.Addr(), err)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	})

	// A blocked Acquire wakes on another client's Release by a message on
	// its grant channel in the key's slot (a shard channel), subscribed on
	// the key's node: one per node the client waits on, none elsewhere, and
	// no classic channel (whose messages every node would relay). The
	// holder's lease is 10 s and the waiter gives up after 5 s, so only the
	// message can wake it.
	t.Run("wait wakes on the key's shard", func(t *testing.T) {
		holder := newClient(t, rdb, renewlock.WithTTL(10*time.Second))
		waiter := newClient(t, cluster.Client())
		ctx := ctxT(t, 20*time.Second)
		base := uniqueKey(t)
		k1 := base + "/first"
		r1 := renewlock.DefaultKeyPrefix + k1
		n1 := nodeFor(t, ctx, rdb, nodes, r1)
		h1, err := holder.Acquire(ctx, k1)
		if err != nil {
			t.Fatal(err)
		}

		type result struct {
			l   *renewlock.Lock
			err error
			at  time.Time
		}
		acquire := func(key string) chan result {
			ch := make(chan result, 1)
			go func() {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				l, err := waiter.Acquire(wctx, key)
				ch <- result{l, err, time.Now()}
			}()
			return ch
		}
		got1 := acquire(k1)
		waitFor(t, 5*time.Second, "the waiter in the queue of "+r1, func() bool {
			return queued(t, rdb, r1) == 1
		})
		if on := grantSubscribedOn(t, nodes, true); len(on) != 1 || on[0] != n1 {
			t.Fatalf("grant channels subscribed on %d nodes, want only on the key's node %s", len(on), n1.Addr())
		}
		var k2, r2 string
		var n2 *redistest.Server
		for i := 0; ; i++ {
			k2 = fmt.Sprintf("%s/second/%d", base, i)
			r2 = renewlock.DefaultKeyPrefix + k2
			if n2 = nodeFor(t, ctx, rdb, nodes, r2); n2 != n1 {
				break
			}
		}
		h2, err := holder.Acquire(ctx, k2)
		if err != nil {
			t.Fatal(err)
		}
		got2 := acquire(k2)
		waitFor(t, 5*time.Second, "the waiter in the queue of "+r2, func() bool {
			return queued(t, rdb, r2) == 1
		})
		if on := grantSubscribedOn(t, nodes, true); len(on) != 2 || !slices.Contains(on, n1) || !slices.Contains(on, n2) {
			t.Fatalf("grant channels subscribed on %d nodes, want on the keys' nodes %s and %s", len(on), n1.Addr(), n2.Addr())
		}
		if on := grantSubscribedOn(t, nodes, false); len(on) != 0 {
			t.Fatalf("a classic grant channel is subscribed on %s", on[0].Addr())
		}

		for _, w := range []struct {
			h   *renewlock.Lock
			got chan result
			n   *redistest.Server
		}{{h2, got2, n2}, {h1, got1, n1}} {
			released := time.Now()
			if err := w.h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-w.got
			if r.err != nil {
				t.Fatalf("waiter for a key on %s not woken by the release: %v", w.n.Addr(), r.err)
			}
			t.Logf("woken by a message on the key's shard (%s) %v after the release (holder's TTL 10s)", w.n.Addr(), r.at.Sub(released))
			if r.l.Token() <= w.h.Token() {
				t.Fatalf("waiter's token %d not above the holder's %d", r.l.Token(), w.h.Token())
			}
			if err := r.l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})

	// Goroutines of one client pass the lock on in one script call on the
	// key's node; with a second client contending too, exclusion holds and
	// tokens only go up.
	t.Run("local hand-off", func(t *testing.T) {
		c := newClient(t, rdb)
		ctx := ctxT(t, 30*time.Second)
		key := uniqueKey(t)
		rkey := renewlock.DefaultKeyPrefix + key
		node := nodeFor(t, ctx, rdb, nodes, rkey).Client()
		first, err := c.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *renewlock.Lock, 1)
		go func() {
			l, err := c.Acquire(ctx, key)
			if err != nil {
				t.Error(err)
			}
			got <- l
		}()
		waitFor(t, 5*time.Second, "the waiter in the queue", func() bool {
			return queued(t, rdb, rkey) == 1
		})
		before := scriptCalls(t, node)
		if err := first.Release(ctx); err != nil {
			t.Fatal(err)
		}
		second := <-got
		if second == nil {
			t.FailNow()
		}
		if n := scriptCalls(t, node) - before; n != 1 {
			t.Errorf("hand-off took %d script calls on the key's node, want 1", n)
		}
		if second.Token() <= first.Token() {
			t.Fatalf("token %d after %d", second.Token(), first.Token())
		}
		if !errors.Is(first.Err(), renewlock.ErrReleased) {
			t.Fatalf("first lock: Err = %v", first.Err())
		}
		if err := second.Release(ctx); err != nil {
			t.Fatal(err)
		}

		// Two clients, three goroutines each.
		const rounds = 15
		c2 := newClient(t, cluster.Client())
		var (
			mu     sync.Mutex
			inside int
			last   uint64
			turns  [2]int
		)
		begin := time.Now()
		var wg sync.WaitGroup
		for g := range 6 {
			cl, idx := c, 0
			if g%2 == 1 {
				cl, idx = c2, 1
			}
			wg.Go(func() {
				for range rounds {
					err := cl.Do(ctx, key, func(ctx context.Context, l *renewlock.Lock) error {
						mu.Lock()
						inside++
						bad := inside != 1
						tokenOK := l.Token() > last
						last = l.Token()
						turns[idx]++
						mu.Unlock()
						time.Sleep(time.Millisecond) // hold it briefly, like real work
						mu.Lock()
						inside--
						mu.Unlock()
						if bad {
							return errors.New("two holders at once")
						}
						if !tokenOK {
							return fmt.Errorf("token %d not above the previous holder's", l.Token())
						}
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		t.Logf("%d contended turns (client 1: %d, client 2: %d) in %v", turns[0]+turns[1], turns[0], turns[1], time.Since(begin))
	})

	// Operator calls: Inspect reads the key's node, List scans every master,
	// ForceRelease ends a lease, which its holder then learns of.
	t.Run("inspect list force-release", func(t *testing.T) {
		const ttl = 500 * time.Millisecond
		c := newClient(t, rdb, renewlock.WithTTL(ttl))
		ctx := ctxT(t, 20*time.Second)
		base := uniqueKey(t)
		var want []string
		held := map[string]*renewlock.Lock{}
		for i := range 30 {
			k := fmt.Sprintf("%s/%02d", base, i)
			l, err := c.TryAcquire(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, k)
			held[k] = l
		}
		sort.Strings(want)
		infos, err := c.List(ctx, base+"/*")
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != len(want) {
			t.Fatalf("List found %d keys, want %d", len(infos), len(want))
		}
		for i, in := range infos {
			if in.Key != want[i] || in.Token != held[in.Key].Token() || in.TTL <= 0 {
				t.Fatalf("List[%d] = %+v, want key %q token %d with a TTL", i, in, want[i], held[want[i]].Token())
			}
		}
		victim := want[7]
		in, err := c.Inspect(ctx, victim)
		if err != nil || in.Token != held[victim].Token() {
			t.Fatalf("Inspect(%q) = %+v, %v; want token %d", victim, in, err, held[victim].Token())
		}
		fr, err := c.ForceRelease(ctx, victim)
		if err != nil || fr.Token != held[victim].Token() {
			t.Fatalf("ForceRelease(%q) = %+v, %v", victim, fr, err)
		}
		if _, err := c.Inspect(ctx, victim); !errors.Is(err, renewlock.ErrNotHeld) {
			t.Fatalf("Inspect after ForceRelease: %v, want ErrNotHeld", err)
		}
		if !closedWithin(held[victim].Done(), 2*time.Second) {
			t.Fatal("holder not told of the forced release within 2 s")
		}
		if !errors.Is(held[victim].Err(), renewlock.ErrLeaseLost) {
			t.Fatalf("forced-out lock: Err = %v, want ErrLeaseLost", held[victim].Err())
		}
		for k, l := range held {
			if k != victim && l.Err() != nil {
				t.Fatalf("lock %q lost alongside the forced one: %v", k, l.Err())
			}
		}
	})

	// Close releases every lock on every node in one pipelined call.
	t.Run("close releases everything", func(t *testing.T) {
		c, err := renewlock.New(rdb, quiet)
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctxT(t, 20*time.Second)
		base := uniqueKey(t)
		var locks []*renewlock.Lock
		var rkeys []string
		for i := range 100 {
			k := fmt.Sprintf("%s/%d", base, i)
			l, err := c.TryAcquire(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			locks = append(locks, l)
			rkeys = append(rkeys, renewlock.DefaultKeyPrefix+k)
		}
		// A waiter blocked on a key held by another client ends too.
		other := newClient(t, cluster.Client())
		blocker, err := other.TryAcquire(ctx, base+"/blocked")
		if err != nil {
			t.Fatal(err)
		}
		defer blocker.Release(ctx)
		waitErr := make(chan error, 1)
		go func() {
			_, err := c.Acquire(ctx, base+"/blocked")
			waitErr <- err
		}()
		waitFor(t, 5*time.Second, "the waiter in the queue", func() bool {
			return queued(t, rdb, renewlock.DefaultKeyPrefix+base+"/blocked") == 1
		})
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := <-waitErr; !errors.Is(err, renewlock.ErrClientClosed) {
			t.Fatalf("blocked Acquire after Close: %v, want ErrClientClosed", err)
		}
		if n := queued(t, rdb, renewlock.DefaultKeyPrefix+base+"/blocked"); n != 0 {
			t.Fatalf("%d waiters still queued after Close, want 0", n)
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.BoolCmd, len(rkeys))
		for i, rk := range rkeys {
			cmds[i] = pipe.HExists(ctx, rk, "o")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, l := range locks {
			if !errors.Is(l.Err(), renewlock.ErrClientClosed) {
				t.Fatalf("lock %q after Close: Err = %v", l.Key(), l.Err())
			}
			if cmds[i].Val() {
				t.Fatalf("lock %q still held in Redis after Close", l.Key())
			}
		}
	})
}

func TestTopologySentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master)
	direct := master.Client()
	const ttl = 300 * time.Millisecond
	var log warnLog
	holder := newClient(t, sentinel.FailoverClient(), renewlock.WithTTL(ttl), log.option())
	waiter := newClient(t, sentinel.FailoverClient())
	ctx := ctxT(t, 20*time.Second)
	base := uniqueKey(t)

	// Renewal through the failover client keeps the lease on the master.
	l, err := holder.Acquire(ctx, base+"/renewed")
	if err != nil {
		t.Fatal(err)
	}
	rkey := renewlock.DefaultKeyPrefix + base + "/renewed"
	for round := 1; round <= 4; round++ {
		time.Sleep(ttl) // the lease must outlive several TTLs
		if err := l.Err(); err != nil {
			t.Fatalf("after %d TTLs: Err = %v; log:\n%s", round, err, log.String())
		}
		if d := direct.PTTL(ctx, rkey).Val(); d <= 0 {
			t.Fatalf("after %d TTLs: PTTL on the master = %v", round, d)
		}
	}
	if tok := direct.HGet(ctx, rkey, "t").Val(); tok != fmt.Sprint(l.Token()) {
		t.Fatalf("token on the master %q, want %d", tok, l.Token())
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if direct.HExists(ctx, rkey, "o").Val() {
		t.Fatal("lock still held on the master after Release")
	}
	if s := log.String(); s != "" {
		t.Errorf("renewal logged warnings:\n%s", s)
	}

	// A blocked Acquire wakes on Release, long before the 10 s lease ends;
	// the new token is larger.
	key := base + "/waited"
	h, err := holder.Acquire(ctx, key, renewlock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   *renewlock.Lock
		err error
		at  time.Time
	}
	got := make(chan result, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		l, err := waiter.Acquire(wctx, key)
		got <- result{l, err, time.Now()}
	}()
	waitFor(t, 5*time.Second, "the waiter's subscription", func() bool {
		return queued(t, direct, renewlock.DefaultKeyPrefix+key) == 1
	})
	released := time.Now()
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("waiter not woken by the release: %v", r.err)
	}
	t.Logf("woken %v after the release (holder's TTL 10s)", r.at.Sub(released))
	if r.l.Token() <= h.Token() {
		t.Fatalf("token %d after %d", r.l.Token(), h.Token())
	}
	if _, err := holder.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("TryAcquire on a held key: %v, want ErrNotAcquired", err)
	}
	if err := r.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
