package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// TestFamilyStress is the randomized interruption stress of the lock family
// (TestStress covers the mutex): over rounds of a few seconds, goroutines of
// 2–4 Clients take permits of a semaphore (limit 2 or 3), read and write
// shares of a read-write lock, and leadership of an election, blocking with
// random deadlines (0–5 ms, or long) or with one attempt, hold them 0–5 ms,
// and give them back with a context that is cancelled, short, or
// background; Clients are closed at random moments and replaced; renew
// intervals go down to 10 ms. It checks:
//
//  1. exclusion: a semaphore never has more than its limit of valid
//     permits, a read-write lock never a reader with a writer or two
//     writers, an election never two leaders — counting only holders whose
//     Done is open and that are not being released or closed;
//  2. once every goroutine returned (before the Clients close), every name
//     is free in Redis (no holder, no queue) within the longest TTL + slack;
//  3. no loss is reported (Lock.Err, Release, Lead) — Redis is not faulted
//     here;
//  4. no goroutine is left once the Clients are closed (goleak).
//
// RENEWLOCK_STRESS (a duration) runs it longer, as for TestStress; the seed
// is logged, and RENEWLOCK_STRESS_SEED replays the choices.
func TestFamilyStress(t *testing.T) {
	total := 10 * time.Second
	if v := os.Getenv("RENEWLOCK_STRESS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("RENEWLOCK_STRESS=%q: want a positive duration", v)
		}
		total = d
	} else if testing.Short() {
		total = 4 * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("RENEWLOCK_STRESS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RENEWLOCK_STRESS_SEED=%q", v)
		}
		seed = s
	}
	t.Logf("family stress: seed %d, duration %v", seed, total)
	srv := redistest.Start(t)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var stats familyStats
	start := time.Now()
	for round := 1; time.Since(start) < total; round++ {
		runFamilyRound(t, srv, round, rand.New(rand.NewPCG(rng.Uint64(), uint64(round))), &stats)
		if t.Failed() {
			t.Fatalf("family stress: seed %d, round %d failed", seed, round)
		}
	}
	t.Logf("family stress summary (seed %d, %v): rounds %d, clients closed mid-round %d, "+
		"permits %d, reads %d, writes %d, terms %d, timeouts %d, not acquired %d, releases with a cancelled or short ctx %d",
		seed, time.Since(start).Round(time.Millisecond), stats.rounds.Load(), stats.closed.Load(),
		stats.permits.Load(), stats.reads.Load(), stats.writes.Load(), stats.terms.Load(),
		stats.timeouts.Load(), stats.notAcquired.Load(), stats.shortReleases.Load())
}

type familyStats struct {
	rounds, closed, permits, reads, writes, terms, timeouts, notAcquired, shortReleases atomic.Int64
}

// familyHolder is one lease obtained in a round.
type familyHolder struct {
	done    <-chan struct{}
	write   bool        // a writer or a leader: exclusive
	leaving atomic.Bool // being released, or its Client is closing
}

type familyRegistry struct {
	mu      sync.Mutex
	holders map[string]map[*familyHolder]bool
}

// enter records h on name and checks the name's rule (limit: at most
// that many valid shares; exclusive holders alone).
func (r *familyRegistry) enter(t *testing.T, name string, h *familyHolder, limit int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holders[name] == nil {
		r.holders[name] = map[*familyHolder]bool{}
	}
	valid, writers := 0, 0
	for o := range r.holders[name] {
		select {
		case <-o.done:
			delete(r.holders[name], o)
			continue
		default:
		}
		if o.leaving.Load() {
			continue
		}
		valid++
		if o.write {
			writers++
		}
	}
	switch {
	case h.write && valid > 0:
		t.Errorf("%s: an exclusive holder next to %d other valid holders", name, valid)
	case !h.write && writers > 0:
		t.Errorf("%s: a shared holder next to a writer", name)
	case limit > 0 && valid+1 > limit:
		t.Errorf("%s: %d valid permits, limit %d", name, valid+1, limit)
	}
	r.holders[name][h] = true
}

func runFamilyRound(t *testing.T, srv *redistest.Server, round int, rng *rand.Rand, stats *familyStats) {
	ignore := goleak.IgnoreCurrent()
	stats.rounds.Add(1)
	base := fmt.Sprintf("fstress/%d/%d", time.Now().UnixNano(), round)
	sem, rw, el := base+"/sem", base+"/rw", base+"/el"
	limit := 2 + rng.IntN(2)
	ttl := time.Duration(300+rng.IntN(700)) * time.Millisecond
	reg := &familyRegistry{holders: map[string]map[*familyHolder]bool{}}
	nClients := 2 + rng.IntN(3)
	type slot struct {
		mu sync.Mutex
		c  *renewlock.Client
	}
	slots := make([]*slot, nClients)
	var all []*renewlock.Client
	var rdbs []*redis.Client
	var allMu sync.Mutex
	newC := func(r *rand.Rand) *renewlock.Client {
		iv := 10 * time.Millisecond
		if r.IntN(2) == 0 {
			iv = ttl / 3
		}
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		c, err := renewlock.New(rdb, quiet, renewlock.WithTTL(ttl), renewlock.WithRenewInterval(iv))
		if err != nil {
			t.Fatal(err)
		}
		allMu.Lock()
		all = append(all, c)
		rdbs = append(rdbs, rdb)
		allMu.Unlock()
		return c
	}
	for i := range slots {
		slots[i] = &slot{c: newC(rng)}
	}
	// leaving marks every holder of a client as leaving (before its Close).
	var holdersMu sync.Mutex
	byClient := map[*renewlock.Client][]*familyHolder{}
	stop := time.Now().Add(time.Duration(800+rng.IntN(1200)) * time.Millisecond)
	lossErr := func(what string, err error) {
		if errors.Is(err, renewlock.ErrLeaseLost) {
			t.Errorf("round %d: %s reports a loss without a cause: %v", round, what, err)
		}
	}
	var wg sync.WaitGroup
	// A closer replaces clients at random moments.
	crng := rand.New(rand.NewPCG(rng.Uint64(), 1))
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			time.Sleep(time.Duration(100+crng.IntN(400)) * time.Millisecond)
			s := slots[crng.IntN(len(slots))]
			s.mu.Lock()
			old := s.c
			s.c = newC(crng)
			s.mu.Unlock()
			holdersMu.Lock()
			for _, h := range byClient[old] {
				h.leaving.Store(true)
			}
			holdersMu.Unlock()
			_ = old.Close()
			stats.closed.Add(1)
		}
	}()
	for g := range 6 * nClients {
		grng := rand.New(rand.NewPCG(rng.Uint64(), uint64(g)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				s := slots[grng.IntN(len(slots))]
				s.mu.Lock()
				c := s.c
				s.mu.Unlock()
				var ctx context.Context
				var cancel context.CancelFunc
				if grng.IntN(3) == 0 {
					ctx, cancel = context.WithTimeout(context.Background(), 2*ttl)
				} else {
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(grng.IntN(5000))*time.Microsecond)
				}
				try := grng.IntN(4) == 0
				op := grng.IntN(4)
				var l *renewlock.Lock
				var lead *renewlock.Leadership
				var err error
				name, write, lim := sem, false, 0
				switch op {
				case 0:
					lim = limit
					if try {
						l, err = c.TryAcquirePermit(ctx, sem, limit)
					} else {
						l, err = c.AcquirePermit(ctx, sem, limit)
					}
				case 1:
					name = rw
					if try {
						l, err = c.TryAcquireRead(ctx, rw)
					} else {
						l, err = c.AcquireRead(ctx, rw)
					}
				case 2:
					name, write = rw, true
					if try {
						l, err = c.TryAcquireWrite(ctx, rw)
					} else {
						l, err = c.AcquireWrite(ctx, rw)
					}
				case 3:
					name, write = el, true
					lead, err = c.Campaign(ctx, el, "v")
				}
				cancel()
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					stats.timeouts.Add(1)
					continue
				case errors.Is(err, renewlock.ErrNotAcquired):
					stats.notAcquired.Add(1)
					continue
				case errors.Is(err, renewlock.ErrClientClosed):
					continue
				case err != nil:
					t.Errorf("round %d: %s: %v", round, name, err)
					return
				}
				var done <-chan struct{}
				var lerr func() error
				var release func(context.Context) error
				if lead != nil {
					done, lerr, release = lead.Done(), lead.Err, lead.Resign
					stats.terms.Add(1)
				} else {
					done, lerr, release = l.Done(), l.Err, l.Release
					switch op {
					case 0:
						stats.permits.Add(1)
					case 1:
						stats.reads.Add(1)
					case 2:
						stats.writes.Add(1)
					}
				}
				h := &familyHolder{done: done, write: write}
				holdersMu.Lock()
				byClient[c] = append(byClient[c], h)
				holdersMu.Unlock()
				reg.enter(t, name, h, lim)
				time.Sleep(time.Duration(grng.IntN(5000)) * time.Microsecond)
				var rctx context.Context
				switch grng.IntN(3) {
				case 0:
					var rc context.CancelFunc
					rctx, rc = context.WithCancel(context.Background())
					rc()
					stats.shortReleases.Add(1)
				case 1:
					var rc context.CancelFunc
					rctx, rc = context.WithTimeout(context.Background(), time.Duration(grng.IntN(2000))*time.Microsecond)
					defer rc()
					stats.shortReleases.Add(1)
				default:
					rctx = context.Background()
				}
				h.leaving.Store(true)
				if err := release(rctx); err != nil {
					lossErr("release", err)
					// A release that did not get through: try once more.
					_ = release(context.Background())
				}
				lossErr("Err", lerr())
			}
		}()
	}
	wg.Wait()
	// Every name ends free: no holder, nobody queued.
	checkRDB := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer checkRDB.Close()
	checker, err := renewlock.New(checkRDB, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sem, rw, el} {
		deadline := time.Now().Add(ttl + 2*time.Second)
		for {
			info, err := checker.Inspect(context.Background(), name)
			if errors.Is(err, renewlock.ErrNotHeld) && info == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("round %d: %s still held or queued after everyone stopped: %+v, %v", round, name, info, err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, c := range all {
		_ = c.Close()
	}
	for _, rdb := range rdbs {
		_ = rdb.Close()
	}
	_ = checker.Close()
	_ = checkRDB.Close()
	var lerr error
	for range 50 {
		if lerr = goleak.Find(ignore); lerr == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lerr != nil {
		t.Errorf("round %d: goroutines left: %v", round, lerr)
	}
}
