package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// TestDeadWaiterGrant: a waiter whose client died (cut off here) keeps its
// place in the queue until its own lease ends — at most one TTL, as the
// README's limits say. A release that grants it the lock before then must
// not give it more: the granted lease ends when the waiter's place would
// have (lib.lua grant, shared.lua sgrant), not a whole TTL from the grant.
// Found by TestChaosFamily (partition: a semaphore's takeover after
// ≈ 1.75 s at TTL 1 s, the room granted to the cut-off client's waiter);
// failed at 1.85 s before the fix.
func TestDeadWaiterGrant(t *testing.T) {
	for _, kind := range []string{"mutex", "semaphore"} {
		t.Run(kind, func(t *testing.T) { deadWaiterGrant(t, kind) })
	}
}

func deadWaiterGrant(t *testing.T, kind string) {
	const ttl = time.Second
	srv := redistest.Start(t)
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	proxy := toxiproxy.NewProxy(api, "b", "127.0.0.1:0", srv.Addr())
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	admin := srv.Client()
	a := newLockClient(t, srv.Client(), renewlock.WithTTL(ttl))
	b := newLockClient(t, redis.NewClient(&redis.Options{Addr: proxy.Listen, MaxRetries: -1}), renewlock.WithTTL(ttl))
	c := newLockClient(t, srv.Client(), renewlock.WithTTL(ttl))
	ctx := testCtx(t, 30*time.Second)
	key := "deadwaiter/" + kind
	take := func(cl *renewlock.Client, ctx context.Context, try bool) (*renewlock.Lock, error) {
		switch {
		case kind == "mutex" && try:
			return cl.TryAcquire(ctx, key)
		case kind == "mutex":
			return cl.Acquire(ctx, key)
		case try:
			return cl.TryAcquirePermit(ctx, key, 1)
		}
		return cl.AcquirePermit(ctx, key, 1)
	}
	la, err := take(a, ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	// b queues; find its place's lease end (e<id>) once it is there.
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	go func() { _, _ = take(b, bctx, false) }()
	rkey := renewlock.DefaultKeyPrefix + key
	var bid, end string
	pollUntil(t, 5*time.Second, "b queued", func() bool {
		f := admin.HGetAll(ctx, rkey).Val()
		for k, v := range f {
			if strings.HasPrefix(k, "q") && k != "qh" && k != "qt" && k != "qn" {
				bid, end = v, f["e"+v]
			}
		}
		return bid != "" && end != ""
	})
	// Cut b off right after it renews its place: from now on b is dead,
	// and its place ends within one TTL.
	pollUntil(t, 2*time.Second, "b renews its place", func() bool { return admin.HGet(ctx, rkey, "e"+bid).Val() != end })
	for _, s := range []string{"upstream", "downstream"} {
		if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(`{"name":"cut_` + s + `","type":"timeout","stream":"` + s + `","toxicity":1,"attributes":{"timeout":0}}`)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { proxy.Toxics.ResetToxics(context.Background()) }) // before b's Close
	died := time.Now()
	endMs, _ := admin.HGet(ctx, rkey, "e"+bid).Int64()
	// c queues behind b.
	got := make(chan time.Time, 1)
	go func() {
		if l, err := take(c, ctx, false); err == nil {
			got <- time.Now()
			_ = l.Release(context.Background())
		}
	}()
	pollUntil(t, 2*time.Second, "c queued", func() bool { n, _ := admin.HGet(ctx, rkey, "qn").Int(); return n == 2 })
	// a releases shortly before b's place would end: the lock is granted
	// to b, which never hears of it.
	for {
		now, err := admin.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if endMs-now.UnixMilli() <= 150 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		waited := at.Sub(died)
		t.Logf("c got the %s %v after b died (TTL %v)", kind, waited.Round(time.Millisecond), ttl)
		if waited > ttl+300*time.Millisecond {
			t.Errorf("a dead waiter kept the %s for %v after it died: more than one TTL (%v), because the lock was granted to it with a lease of a whole TTL", kind, waited.Round(time.Millisecond), ttl)
		}
	case <-time.After(5 * ttl):
		t.Fatalf("c never got the %s", kind)
	}
}
