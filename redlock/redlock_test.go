package redlock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/redlock"
)

// Bad input to New is an error wrapping ErrInvalidArgument that says what
// is wrong; nothing is started.
func TestNewRejectsBadMasters(t *testing.T) {
	a := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	b := redis.NewClient(&redis.Options{Addr: "127.0.0.1:2"})
	sameAddr := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DB: 3})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:3"}})
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:4"}})
	var typedNil *redis.Client
	t.Cleanup(func() {
		for _, c := range []interface{ Close() error }{a, b, sameAddr, cluster, ring} {
			_ = c.Close()
		}
	})
	for _, tc := range []struct {
		name    string
		masters []redis.UniversalClient
		opts    []renewlock.Option
		want    string
	}{
		{"no masters", nil, nil, "no masters"},
		{"empty", []redis.UniversalClient{}, nil, "no masters"},
		{"nil master", []redis.UniversalClient{a, nil, b}, nil, "master 1 is nil"},
		{"typed nil master", []redis.UniversalClient{a, b, typedNil}, nil, "master 2 is nil"},
		{"same client twice", []redis.UniversalClient{a, b, a}, nil, "masters 0 and 2 are the same client"},
		{"same server twice", []redis.UniversalClient{a, b, sameAddr}, nil, "masters 0 and 2 both connect to 127.0.0.1:1"},
		{"cluster", []redis.UniversalClient{a, b, cluster}, nil, "master 2 is a *redis.ClusterClient"},
		{"ring", []redis.UniversalClient{ring, a, b}, nil, "master 0 is a *redis.Ring"},
		{"bad option", []redis.UniversalClient{a, b}, []renewlock.Option{renewlock.WithTTL(time.Millisecond)}, "ttl 1ms is below the minimum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redlock.New(tc.masters, append([]renewlock.Option{quiet}, tc.opts...)...)
			if err == nil {
				_ = c.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, renewlock.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidArgument saying %q", err, tc.want)
			}
		})
	}
}

// Even counts (and fewer than 3) are allowed; New says what the quorum is,
// and how many failed masters a lock survives.
func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		var masters []redis.UniversalClient
		for i := range n {
			rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", 10+i)})
			t.Cleanup(func() { _ = rdb.Close() })
			masters = append(masters, rdb)
		}
		var log bytes.Buffer
		c, err := redlock.New(masters, renewlock.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
		if err != nil {
			t.Fatalf("%d masters: %v", n, err)
		}
		if c.Quorum() != want {
			t.Errorf("%d masters: quorum %d, want %d", n, c.Quorum(), want)
		}
		said := strings.Contains(log.String(), fmt.Sprintf("the quorum is %d, so a lock survives %d failed masters", want, n-want))
		if warned := n < 3 || n%2 == 0; said != warned {
			t.Errorf("%d masters: logged %q", n, log.String())
		}
		_ = c.Close()
	}
}

func TestAcquireArguments(t *testing.T) {
	cl := startMasters(t, 3)
	c := cl.newClient()
	ctx := ctxT(t, 10*time.Second)
	//lint:ignore SA1012 a nil context is the bad input under test
	if _, err := c.Acquire(nil, "k"); !errors.Is(err, renewlock.ErrInvalidArgument) { //nolint:staticcheck
		t.Errorf("nil ctx: %v", err)
	}
	if _, err := c.TryAcquire(ctx, ""); !errors.Is(err, renewlock.ErrInvalidArgument) {
		t.Errorf("empty key: %v", err)
	}
	if _, err := c.Acquire(ctx, "k", renewlock.WithDrift(0.7)); !errors.Is(err, renewlock.ErrInvalidArgument) || !strings.Contains(err.Error(), "drift 0.7") {
		t.Errorf("bad option: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Acquire(cctx, "k"); !errors.Is(err, context.Canceled) || errors.Is(err, renewlock.ErrNotAcquired) {
		t.Errorf("cancelled ctx: %v", err)
	}
	_ = c.Close()
	if _, err := c.Acquire(ctx, "k"); !errors.Is(err, renewlock.ErrClientClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// A fenced register: the protected resource, accepting a write only with a
// token at least the largest it has accepted for the key.
type register struct {
	mu       sync.Mutex
	max      map[string]uint64
	accepted int
	rejected int
}

func newRegister() *register { return &register{max: make(map[string]uint64)} }

func (r *register) write(key string, token uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if token < r.max[key] {
		r.rejected++
		return false
	}
	r.max[key] = token
	r.accepted++
	return true
}

// Many goroutines in several Clients contend for two keys on 3 and 5
// masters: at most one holds a key at any moment, every Release succeeds,
// tokens rise strictly in the order the key was held, the fenced register
// never rejects a write, and every goroutine gets its turn.
func TestExclusionAndMonotonicTokens(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d masters", n), func(t *testing.T) {
			cl := startMasters(t, n)
			const clients, perClient = 3, 4
			var rls []*redlock.Client
			for range clients {
				rls = append(rls, cl.newClient(renewlock.WithTTL(2*time.Second)))
			}
			keys := []string{uniqueKey(t), uniqueKey(t)}
			reg := newRegister()
			type keyState struct {
				mu     sync.Mutex
				inside atomic.Int32
				last   uint64
				n      int
			}
			states := map[string]*keyState{keys[0]: {}, keys[1]: {}}
			var mu sync.Mutex
			var problems []string
			fail := func(format string, args ...any) {
				mu.Lock()
				problems = append(problems, fmt.Sprintf(format, args...))
				mu.Unlock()
			}
			wins := make([]int, clients*perClient)
			ctx := ctxT(t, 60*time.Second)
			stop := time.Now().Add(2 * time.Second)
			var wg sync.WaitGroup
			for g := range clients * perClient {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := rls[g%clients]
					for i := 0; time.Now().Before(stop); i++ {
						key := keys[(g+i)%len(keys)]
						var l *redlock.Lock
						var err error
						if rand.N(4) == 0 {
							if l, err = c.TryAcquire(ctx, key); errors.Is(err, renewlock.ErrNotAcquired) {
								continue
							}
						} else {
							actx, cancel := context.WithTimeout(ctx, 10*time.Second)
							l, err = c.Acquire(actx, key)
							cancel()
						}
						if err != nil {
							fail("goroutine %d: acquire: %v", g, err)
							return
						}
						st := states[key]
						if in := st.inside.Add(1); in != 1 {
							fail("key %s: %d holders at once", key, in)
						}
						st.mu.Lock()
						if l.Token() <= st.last {
							fail("key %s: token %d after %d", key, l.Token(), st.last)
						}
						st.last = l.Token()
						st.n++
						st.mu.Unlock()
						if !reg.write(key, l.Token()) {
							fail("key %s: register rejected token %d", key, l.Token())
						}
						time.Sleep(time.Duration(rand.N(1500)) * time.Microsecond)
						if l.Err() != nil {
							fail("key %s: lock lost while held: %v", key, l.Err())
						}
						st.inside.Add(-1)
						if err := l.Release(ctx); err != nil {
							fail("key %s: release: %v", key, err)
						}
						wins[g]++
					}
				}()
			}
			wg.Wait()
			for _, p := range problems {
				t.Error(p)
			}
			total := 0
			for g, w := range wins {
				if w == 0 {
					t.Errorf("goroutine %d never held a lock", g)
				}
				total += w
			}
			t.Logf("%d acquisitions (%d and %d per key), per goroutine %v, register accepted %d rejected %d",
				total, states[keys[0]].n, states[keys[1]].n, wins, reg.accepted, reg.rejected)
		})
	}
}

// A minority held elsewhere does not stop an acquisition; a majority does,
// and TryAcquire then says ErrNotAcquired and names the quorum.
func TestTryAcquireNeedsAQuorum(t *testing.T) {
	cl := startMasters(t, 3)
	c := cl.newClient()
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	// Outsiders: plain renewlock mutexes on single masters.
	var outside []*renewlock.Client
	for _, s := range cl.servers {
		o, err := renewlock.New(s.Client(), quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = o.Close() })
		outside = append(outside, o)
	}
	g := redlock.GateOf(c, key)
	a, b := (g+1)%3, (g+2)%3 // the masters that are not the key's gate
	o0, err := outside[a].Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.TryAcquire(ctx, key)
	if err != nil {
		t.Fatalf("one master of 3 held elsewhere: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The gate held elsewhere: the attempt yields to whoever holds it (a
	// waiter served next, normally), though a quorum is free.
	og, err := outside[g].Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	_ = o0.Release(ctx)
	if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) || !strings.Contains(err.Error(), "on its gate") {
		t.Fatalf("gate held elsewhere: %v", err)
	}
	if err := og.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if o0, err = outside[a].Acquire(ctx, key); err != nil {
		t.Fatal(err)
	}
	o1, err := outside[b].Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.TryAcquire(ctx, key)
	if !errors.Is(err, renewlock.ErrNotAcquired) || !strings.Contains(err.Error(), "held by others on 2 of 3 masters (quorum 2)") {
		t.Fatalf("two masters of 3 held elsewhere: %v", err)
	}
	// Acquire waits, and gets it once a majority is free again.
	got := make(chan error, 1)
	go func() {
		l, err := c.Acquire(ctx, key)
		if err == nil {
			err = l.Release(ctx)
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := o1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("Acquire after a majority was freed: %v", err)
	}
	_ = o0.Release(ctx)
}

// A waiter wakes when the holder releases (it waits in the queue of the
// key's gate master), rather than sleeping out a backoff.
func TestHandOffIsEventDriven(t *testing.T) {
	cl := startMasters(t, 3)
	holder, waiter := cl.newClient(), cl.newClient()
	ctx := ctxT(t, 60*time.Second)
	var lat []time.Duration
	for range 15 {
		key := uniqueKey(t)
		l, err := holder.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan time.Time, 1)
		var wl *redlock.Lock
		var werr error
		go func() {
			wl, werr = waiter.Acquire(ctx, key)
			got <- time.Now()
		}()
		time.Sleep(150 * time.Millisecond) // the waiter is queued by now
		t0 := time.Now()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		t1 := <-got
		if werr != nil {
			t.Fatal(werr)
		}
		if wl.Token() <= l.Token() {
			t.Fatalf("token %d after %d", wl.Token(), l.Token())
		}
		lat = append(lat, t1.Sub(t0))
		if err := wl.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	med := median(lat)
	t.Logf("hand-off latencies: median %v, all %v", med, lat)
	// A sleeping waiter would take tens of ms (backoff up to 100 ms).
	if med > 20*time.Millisecond {
		t.Errorf("median hand-off %v: the waiter was not woken by the release", med)
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// Release twice returns the same result; Done, Err and Context follow the
// mutex's rules.
func TestReleaseAndContext(t *testing.T) {
	cl := startMasters(t, 3)
	c := cl.newClient()
	ctx := ctxT(t, 10*time.Second)
	l, err := c.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := l.Context(ctx)
	defer cancel()
	if l.Err() != nil || lctx.Err() != nil {
		t.Fatalf("held lock: Err %v, ctx %v", l.Err(), lctx.Err())
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if !closedWithin(lctx.Done(), time.Second) {
		t.Fatal("the lock's Context was not cancelled by Release")
	}
	if !errors.Is(l.Err(), renewlock.ErrReleased) || !errors.Is(context.Cause(lctx), renewlock.ErrReleased) {
		t.Fatalf("after Release: Err %v, ctx cause %v", l.Err(), context.Cause(lctx))
	}
	//lint:ignore SA1012 a nil context is the bad input under test
	if err := l.Release(nil); !errors.Is(err, renewlock.ErrInvalidArgument) { //nolint:staticcheck
		t.Fatalf("Release(nil) = %v", err)
	}
	// Nothing is left on any master (Release returns once a quorum
	// confirmed; the last master follows at once).
	for i, s := range cl.servers {
		deadline := time.Now().Add(time.Second)
		for s.Client().DBSize(ctx).Val() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("master %d: keys left after release: %q", i, s.Client().Keys(ctx, "*").Val())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Close closes every held lock's Done at once with ErrClientClosed, makes
// blocked Acquire calls return ErrClientClosed, and leaves no key behind.
func TestClose(t *testing.T) {
	cl := startMasters(t, 3)
	c := cl.newClient()
	other := cl.newClient()
	ctx := ctxT(t, 10*time.Second)
	var locks []*redlock.Lock
	for range 3 {
		l, err := c.Acquire(ctx, uniqueKey(t))
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	held, err := other.Acquire(ctx, uniqueKey(t))
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := c.Acquire(ctx, held.Key())
		blocked <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i, l := range locks {
		if !closedWithin(l.Done(), 0) || !errors.Is(l.Err(), renewlock.ErrClientClosed) {
			t.Errorf("lock %d: Err %v", i, l.Err())
		}
		if err := l.Release(ctx); !errors.Is(err, renewlock.ErrClientClosed) {
			t.Errorf("lock %d: Release after Close = %v", i, err)
		}
	}
	if err := <-blocked; !errors.Is(err, renewlock.ErrClientClosed) {
		t.Errorf("blocked Acquire returned %v", err)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for i, s := range cl.servers {
		if keys := s.Client().Keys(ctx, "*").Val(); len(keys) != 0 {
			t.Errorf("master %d: keys left after Close: %q", i, keys)
		}
	}
}

// A holder that got its quorum without the gate master (down while it
// acquired) still hands the lock over by event: the waiter takes the gate,
// waits in the queue of a master the holder has, and is handed it by the
// release.
func TestHandOffWhenTheHolderLacksTheGate(t *testing.T) {
	cl := startMasters(t, 3)
	holder, waiter := cl.newClient(), cl.newClient()
	ctx := ctxT(t, 60*time.Second)
	var lat []time.Duration
	for range 8 {
		key := uniqueKey(t)
		g := redlock.GateOf(holder, key)
		cl.servers[g].Kill()
		l, err := holder.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		cl.servers[g].Restart()
		got := make(chan time.Time, 1)
		var wl *redlock.Lock
		var werr error
		go func() {
			wl, werr = waiter.Acquire(ctx, key)
			got <- time.Now()
		}()
		time.Sleep(300 * time.Millisecond) // the waiter holds the gate and waits by now
		if !cl.heldOn(t, g, key) {
			t.Fatal("the waiter does not hold the gate")
		}
		t0 := time.Now()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		t1 := <-got
		if werr != nil {
			t.Fatal(werr)
		}
		lat = append(lat, t1.Sub(t0))
		if wl.Token() <= l.Token() {
			t.Fatalf("token %d after %d", wl.Token(), l.Token())
		}
		if err := wl.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	med := median(lat)
	t.Logf("hand-off latencies: median %v, all %v", med, lat)
	if med > 20*time.Millisecond {
		t.Errorf("median hand-off %v: the waiter was not woken by the release", med)
	}
}
