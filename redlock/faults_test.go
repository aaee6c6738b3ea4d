package redlock_test

// Faults on real redis-server processes: masters killed, paused (SIGSTOP)
// and restarted empty, alone or a majority; a holder cut off from every
// master; a paused holder; tokens far ahead of the clocks. Each test names
// the GUARANTEES.md cell it backs.

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/redlock"
)

// Short leases, so that faults play out in a second or two.
const (
	ttl      = time.Second
	interval = 150 * time.Millisecond
)

var short = []renewlock.Option{renewlock.WithTTL(ttl), renewlock.WithRenewInterval(interval)}

var errCut = errors.New("cut off from this master (injected)")

// cutHook fails every command of a go-redis client while cut is set: the
// client is partitioned from its master (or its process is frozen, as far
// as Redis can tell).
type cutHook struct{ cut atomic.Bool }

func (*cutHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *cutHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.cut.Load() {
			cmd.SetErr(errCut)
			return errCut
		}
		return next(ctx, cmd)
	}
}
func (h *cutHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.cut.Load() {
			for _, c := range cmds {
				c.SetErr(errCut)
			}
			return errCut
		}
		return next(ctx, cmds)
	}
}

// raiseSHA is the SHA1 of redlock's write-back script.
var raiseSHA = func() string {
	src, err := os.ReadFile("raise.lua")
	if err != nil {
		panic(err)
	}
	sum := sha1.Sum(src)
	return hex.EncodeToString(sum[:])
}()

// leaseHook records when the last command that set or extended a lease on
// its master was sent and answered: the acquire and every renewal (the
// write-back does not extend a lease). Redis ran it no earlier than it was
// sent, so the lease there ends no earlier than that send + TTL.
type leaseHook struct {
	mu   sync.Mutex
	last time.Time
}

func (h *leaseHook) record(start time.Time) {
	h.mu.Lock()
	if start.After(h.last) {
		h.last = start
	}
	h.mu.Unlock()
}

func (h *leaseHook) lastExtended() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

func isScript(cmd redis.Cmder) bool {
	n := strings.ToLower(cmd.Name())
	return n == "evalsha" || n == "eval"
}

func (*leaseHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *leaseHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		if err == nil && isScript(cmd) {
			sha, _ := cmd.Args()[1].(string)
			if sum := sha1.Sum([]byte(sha)); sha != raiseSHA && hex.EncodeToString(sum[:]) != raiseSHA {
				h.record(start)
			}
		}
		return err
	}
}
func (h *leaseHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		if err == nil {
			h.record(start) // renewals (and batched acquires) travel in pipelines
		}
		return err
	}
}

func hooks[H redis.Hook](hs []H) []redis.Hook {
	out := make([]redis.Hook, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

// heldOn reports whether key is held (has an owner) on master i.
func (c *cluster) heldOn(t testing.TB, i int, key string) bool {
	t.Helper()
	n, err := c.servers[i].Client().HExists(context.Background(), renewlock.DefaultKeyPrefix+key, "o").Result()
	if err != nil {
		t.Fatalf("master %d: %v", i, err)
	}
	return n
}

// waitHeldOnAll waits until key is held on every master (the straggler of
// an acquisition joins right after it returns).
func (c *cluster) waitHeldOnAll(t testing.TB, key string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for i := range c.servers {
		for !c.heldOn(t, i, key) {
			if time.Now().After(deadline) {
				t.Fatalf("key %q never held on master %d", key, i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// GUARANTEES.md: Redlock 3 and 5 × primary loss (minority) and restart
// without persistence (minority, at once). A lock on 3 (5) masters survives
// the loss of a minority, one master (two, killed one after the other) —
// killed, then restarted empty — and excludes others throughout; it takes
// the restarted masters again, so it survives another minority's loss after
// that; losing one master more (a majority down) loses the lock, at the
// validity deadline, with the cause.
func TestMinorityKilledAndRestartedEmpty(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(strconv.Itoa(n)+" masters", func(t *testing.T) { minorityKilledAndRestartedEmpty(t, n) })
	}
}

func minorityKilledAndRestartedEmpty(t *testing.T, n int) {
	q := redlockQuorum(n)
	minority := n - q // the most masters the lock survives losing: 1 of 3, 2 of 5
	cl := startMasters(t, n)
	c := cl.newClient(short...)
	other := cl.newClient(short...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	cl.waitHeldOnAll(t, key)

	// A minority down, one master after the other: 0, …, minority-1.
	for i := range minority {
		cl.servers[i].Kill()
		if closedWithin(l.Done(), 2*ttl) {
			t.Fatalf("lock lost with %d masters of %d down: %v", i+1, n, l.Err())
		}
		if _, err := other.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
			t.Fatalf("another client while %d masters of %d are down: %v", i+1, n, err)
		}
	}
	for i := range minority {
		cl.servers[i].Restart() // empty: our part there is gone
	}
	if closedWithin(l.Done(), 2*ttl) {
		t.Fatalf("lock lost after %d masters of %d restarted empty: %v", minority, n, l.Err())
	}
	if _, err := other.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
		t.Fatalf("another client after %d masters of %d restarted empty: %v", minority, n, err)
	}
	cl.waitHeldOnAll(t, key) // the restarted masters taken again
	// Another minority down: minority, …, 2·minority-1; a bare quorum is left.
	for i := minority; i < 2*minority; i++ {
		cl.servers[i].Kill()
	}
	if closedWithin(l.Done(), 2*ttl) {
		t.Fatalf("lock lost when %d more masters of %d failed after the restarted ones were taken again: %v", minority, n, l.Err())
	}

	killed := time.Now()
	cl.servers[0].Kill() // a majority down
	if !closedWithin(l.Done(), 2*ttl) {
		t.Fatalf("lock still held with %d masters of %d", q-1, n)
	}
	told := time.Since(killed)
	if told > ttl {
		t.Errorf("loss signalled %v after the kill; the leases could end after %v", told, ttl)
	}
	want := fmt.Sprintf("of %d masters still hold it, quorum %d", n, q)
	if !errors.Is(l.Err(), renewlock.ErrLeaseLost) || !strings.Contains(l.Err().Error(), want) {
		t.Fatalf("Err = %v", l.Err())
	}
	if err := l.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Release after the loss = %v", err)
	}
	t.Logf("lost %v after the kill that left %d of %d masters: %v", told.Round(time.Millisecond), q-1, n, l.Err())
}

// GUARANTEES.md: Redlock 3 and 5 × primary pause. One master (3) or two
// (5) paused: the lock holds. A majority paused: the holder is told before
// a quorum of the masters could let the key expire — measured against the
// last lease extension each master answered — and another client gets the
// lock only after that.
func TestPause(t *testing.T) {
	for _, tc := range []struct {
		n, paused int
	}{{3, 1}, {3, 2}, {5, 2}, {5, 3}, {3, 3}} {
		name := strconv.Itoa(tc.paused) + " of " + strconv.Itoa(tc.n)
		t.Run(name, func(t *testing.T) {
			cl := startMasters(t, tc.n)
			rec := make([]*leaseHook, tc.n)
			for i := range rec {
				rec[i] = &leaseHook{}
			}
			// A safety margin above scheduling noise on a busy test machine.
			opts := append([]renewlock.Option{renewlock.WithSafetyMargin(30 * time.Millisecond)}, short...)
			c := cl.newClientOn(cl.clients(hooks(rec)...), opts...)
			other := cl.newClient(short...)
			ctx := ctxT(t, 30*time.Second)
			key := uniqueKey(t)
			l, err := c.Acquire(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			cl.waitHeldOnAll(t, key)
			time.Sleep(2 * interval) // renewals under way

			paused := time.Now()
			for i := range tc.paused {
				cl.servers[i].Pause()
			}
			resumed := false
			resume := func() {
				if !resumed {
					for i := range tc.paused {
						cl.servers[i].Resume()
					}
					resumed = true
				}
			}
			defer resume()
			majority := tc.paused >= redlockQuorum(tc.n)
			if !majority {
				if closedWithin(l.Done(), 3*ttl) {
					t.Fatalf("lock lost with %s masters paused: %v", name, l.Err())
				}
				resume()
				if closedWithin(l.Done(), 2*interval) {
					t.Fatalf("lock lost after the pause: %v", l.Err())
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !closedWithin(l.Done(), 3*ttl) {
				t.Fatal("lock still held with a majority paused")
			}
			told := time.Now()
			// Until the loss, every master that is not paused keeps the
			// key. A quorum lacks it only once all but quorum-1 of the
			// paused masters have let it expire: the (quorum - unpaused)-th
			// latest expiry among them.
			var expiry []time.Time
			for i := range tc.paused {
				expiry = append(expiry, rec[i].lastExtended().Add(ttl))
			}
			slices.SortFunc(expiry, func(a, b time.Time) int { return b.Compare(a) })
			earliest := expiry[redlockQuorum(tc.n)-(tc.n-tc.paused)-1]
			lead := earliest.Sub(told)
			t.Logf("told %v after the pause, %v before a quorum could expire (validity margin TTL·drift + margin = %v)",
				told.Sub(paused).Round(time.Millisecond), lead.Round(time.Millisecond), ttl/100+30*time.Millisecond)
			if lead <= 0 {
				t.Errorf("loss told %v after a quorum of masters could let the key expire", -lead)
			}
			if !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
				t.Fatalf("Err = %v", l.Err())
			}
			resume()
			l2, err := other.Acquire(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if !time.Now().After(told) || l2.Token() <= l.Token() {
				t.Fatalf("next holder: token %d after %d", l2.Token(), l.Token())
			}
			_ = l2.Release(ctx)
			if err := l.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
				t.Fatalf("Release after the loss = %v", err)
			}
		})
	}
}

func redlockQuorum(n int) int { return n/2 + 1 }

// GUARANTEES.md: Redlock 3 and 5 × restart without persistence. The
// classic Redlock hole and its cure:
//   - a master of the holder's bare quorum (it cannot reach the other
//     masters: the third of 3, the fourth and fifth of 5) restarts empty at
//     once: another client can take the key on it and the free masters
//     while the holder still believes it holds the lock, until its next
//     renewal there (one renew interval); the newcomer's token is larger
//     (tokens never go below the server clock), so a fenced resource stays
//     safe;
//   - the same master restarts empty one TTL later (delayed restart): the
//     holder has been told of the loss before the master is back, so the
//     two are never valid at once.
func TestRestartEmpty(t *testing.T) {
	for _, delayed := range []bool{false, true} {
		name := "at once"
		if delayed {
			name = "after one TTL"
		}
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{3, 5} {
				t.Run(strconv.Itoa(n)+" masters", func(t *testing.T) { restartEmpty(t, n, delayed) })
			}
		})
	}
}

func restartEmpty(t *testing.T, n int, delayed bool) {
	q := redlockQuorum(n)
	cl := startMasters(t, n)
	// a cannot reach masters q, …, n-1 (so it holds a bare quorum, 0, …,
	// q-1, and cannot take the others later either); b reaches every
	// master.
	cuts := make([]*cutHook, n)
	for i := range cuts {
		cuts[i] = &cutHook{}
		cuts[i].cut.Store(i >= q)
	}
	a := cl.newClientOn(cl.clients(hooks(cuts)...), short...)
	b := cl.newClient(short...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	gone := cl.servers[q-1] // one master of a's bare quorum
	gone.Kill()
	down := time.Now()
	var aTold time.Time
	if delayed {
		if !closedWithin(la.Done(), 2*ttl) {
			t.Fatal("holder not told of the loss within one TTL of its master going down")
		}
		aTold = time.Now()
		time.Sleep(ttl - time.Since(down))
	}
	gone.Restart()
	restarted := time.Now()
	lb, err := b.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	bAt := time.Now()
	if !delayed {
		if !closedWithin(la.Done(), 2*interval+100*time.Millisecond) {
			t.Fatal("the old holder was not told within one renew interval")
		}
		aTold = time.Now()
	}
	overlap := aTold.Sub(bAt)
	if delayed {
		t.Logf("delayed restart: the old holder was told %v after its master went down, %v before the new holder got the key",
			aTold.Sub(down).Round(time.Millisecond), (-overlap).Round(time.Millisecond))
		if overlap > 0 {
			t.Errorf("delayed restart: both valid for %v", overlap)
		}
	} else {
		t.Logf("restart at once: the new holder got the key %v after the restart; the old holder was told %v later (both believed they held it)",
			bAt.Sub(restarted).Round(time.Millisecond), overlap.Round(time.Millisecond))
		if overlap > 2*interval+100*time.Millisecond {
			t.Errorf("overlap %v, more than one renew interval", overlap)
		}
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("tokens went backwards: %d after %d", lb.Token(), la.Token())
	}
	reg := newRegister()
	if !reg.write(key, lb.Token()) || reg.write(key, la.Token()) {
		t.Fatal("the fenced register did not keep the old holder out")
	}
	_ = lb.Release(ctx)
	if err := la.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("old holder's Release = %v", err)
	}
}

// GUARANTEES.md: Redlock 3 and 5 × restart without persistence, a
// majority (2 of 3, 3 of 5, at once). More than a minority losing their
// data is outside the Redlock's guarantee: a second holder gets in at once
// and the first learns at its next renewal. Tokens still rise because the
// newcomer's masters issue their clock — unless a token had run ahead of
// the clocks (TestLimitMajorityDataLoss…).
func TestMajorityRestartEmpty(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(strconv.Itoa(n)+" masters", func(t *testing.T) { majorityRestartEmpty(t, n) })
	}
}

func majorityRestartEmpty(t *testing.T, n int) {
	cl := startMasters(t, n)
	a, b := cl.newClient(short...), cl.newClient(short...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	cl.waitHeldOnAll(t, key)
	// The majority that restarts includes the key's gate: on a gate where
	// a still held the key, b's TryAcquire would yield (Acquire would wait
	// there until a lost the lock and freed it).
	g := redlock.GateOf(b, key)
	var majority []int
	for i := range redlockQuorum(n) {
		majority = append(majority, (g+i)%n)
	}
	cl.restartAtOnce(t, majority)
	lb, err := b.TryAcquire(ctx, key)
	if err != nil {
		t.Fatalf("a majority restarted empty: %v", err)
	}
	bAt := time.Now()
	if !closedWithin(la.Done(), 2*interval+100*time.Millisecond) {
		t.Fatal("the old holder was not told within one renew interval")
	}
	t.Logf("both held the key for %v; tokens %d then %d", time.Since(bAt).Round(time.Millisecond), la.Token(), lb.Token())
	if lb.Token() <= la.Token() {
		t.Fatalf("tokens went backwards: %d after %d", lb.Token(), la.Token())
	}
	_ = lb.Release(ctx)
}

// restartAtOnce kills masters idx, then restarts them, empty, together:
// their data is gone at one instant and they are back within one launch of
// each other. (Restarting them one after the other takes about 100 ms
// each, long enough for the holder to learn of each loss and take the
// restarted master again.)
func (c *cluster) restartAtOnce(t testing.TB, idx []int) {
	t.Helper()
	for _, i := range idx {
		c.servers[i].Kill()
	}
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for j, i := range idx {
		wg.Go(func() { errs[j] = c.servers[i].Server.Restart() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// preloadToken makes master i's stored token for key far ahead of its
// clock, as a tombstone (a hash with t and no owner) that lasts ttl: what
// a master whose clock ran ahead, or that was given such a token, keeps.
func (c *cluster) preloadToken(t testing.TB, i int, key string, token uint64, ttl time.Duration) {
	t.Helper()
	rdb := c.servers[i].Client()
	rkey := renewlock.DefaultKeyPrefix + key
	if err := rdb.HSet(context.Background(), rkey, "t", strconv.FormatUint(token, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.PExpire(context.Background(), rkey, ttl).Err(); err != nil {
		t.Fatal(err)
	}
}

func serverMicros(t testing.TB, rdb *redis.Client) uint64 {
	tm, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return uint64(tm.UnixMicro())
}

// GUARANTEES.md: Redlock 3 × clock offset. One master keeps what a clock
// an hour ahead leaves behind — a stored token an hour ahead of the
// others' — while its clock is on time (TestTokensStayMonotonicWithMasters-
// ClocksApart runs the masters' clocks apart for real). Through hand-offs,
// holders cut off until their leases expired (the token must outlive the
// lease: the floor), that master's death and a minority restarting empty,
// every token is larger than the one before.
func TestTokensStayMonotonicWithATokenFarAhead(t *testing.T) {
	cl := startMasters(t, 3)
	key := uniqueKey(t)
	ahead := serverMicros(t, cl.servers[0].Client()) + uint64(time.Hour/time.Microsecond)
	cl.preloadToken(t, 0, key, ahead, 2*time.Hour)
	tokens := tokenTrial(t, cl, key)
	if tokens[4] < ahead {
		t.Fatalf("the master an hour ahead was never in a quorum: tokens %v", tokens)
	}
	t.Logf("tokens: %v (the first master started %v ahead)", tokens, time.Hour)
}

// tokenTrial runs acquisitions of one key on cl (3 or 5 masters) through
// hand-offs, holders cut off until their leases expired (the token must
// outlive the lease: the floor), the death of master 0 and master 1
// restarting empty, failing t unless every token is larger than the one
// before. It returns the tokens.
func tokenTrial(t *testing.T, cl *cluster, key string) []uint64 {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	var last uint64
	var tokens []uint64
	check := func(step string, l *redlock.Lock) {
		t.Helper()
		tokens = append(tokens, l.Token())
		if l.Token() <= last {
			t.Fatalf("%s: token %d after %d (all: %v)", step, l.Token(), last, tokens)
		}
		last = l.Token()
	}
	// cycle acquires and releases the key n times, from fresh clients.
	cycle := func(step string, n int) {
		t.Helper()
		c := cl.newClient(short...)
		for range n {
			l, err := c.Acquire(ctx, key)
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			check(step, l)
			if err := l.Release(ctx); err != nil {
				t.Fatalf("%s: release: %v", step, err)
			}
		}
	}
	// crash acquires the key from a client that is then cut off from every
	// master: its leases expire, with no release.
	crash := func(step string) {
		t.Helper()
		cuts := make([]*cutHook, len(cl.servers))
		for i := range cuts {
			cuts[i] = &cutHook{}
		}
		c := cl.newClientOn(cl.clients(hooks(cuts)...), short...)
		l, err := c.Acquire(ctx, key)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		check(step, l)
		time.Sleep(50 * time.Millisecond) // a straggler joins
		for _, h := range cuts {
			h.cut.Store(true)
		}
		if !closedWithin(l.Done(), 2*ttl) {
			t.Fatalf("%s: the cut-off holder was not told", step)
		}
		time.Sleep(ttl) // its leases expire
	}

	cycle("hand-offs", 5)
	crash("holder cut off")
	cycle("after the expiry", 3)
	crash("holder cut off again")
	cl.servers[0].Kill()
	cycle("master 0 dead", 3)
	crash("holder cut off, master 0 dead")
	cycle("after the expiry, master 0 dead", 3)
	cl.servers[1].Restart() // a minority loses its data
	cycle("master 1 restarted empty", 3)
	crash("holder cut off after the restart")
	cycle("after the expiry", 3)
	return tokens
}

// The limit that comes with more than a minority losing data: a token far
// ahead of the clocks is forgotten with the masters that knew it, and the
// next token can be smaller. GUARANTEES.md states it; this test keeps the
// statement honest.
func TestLimitMajorityDataLossForgetsTokensAheadOfClock(t *testing.T) {
	cl := startMasters(t, 3)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	ahead := serverMicros(t, cl.servers[0].Client()) + uint64(time.Hour/time.Microsecond)
	cl.preloadToken(t, 0, key, ahead, 2*time.Hour)
	cl.preloadToken(t, 1, key, ahead, 2*time.Hour)
	c := cl.newClient(short...)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	cl.waitFree(t, key)
	// Two masters restart empty; the third, the only one left that knows
	// the token, is down.
	for i := range cl.servers[:2] {
		cl.servers[i].Restart()
	}
	cl.servers[2].Kill()
	l2, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	_ = l2.Release(ctx)
	if l2.Token() > l.Token() {
		t.Fatalf("token %d after %d: the limit no longer holds; update GUARANTEES.md", l2.Token(), l.Token())
	}
	t.Logf("two of three masters restarted empty: token %d after %d", l2.Token(), l.Token())
}

// waitFree waits until key has no owner on any master.
func (c *cluster) waitFree(t testing.TB, key string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for i := range c.servers {
		for c.heldOn(t, i, key) {
			if time.Now().After(deadline) {
				t.Fatalf("key %q still held on master %d", key, i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// GUARANTEES.md: Redlock 3 and 5 × partition of one client, and the
// paused holder. A holder cut off from every master is told at its validity
// deadline, before any other client can get the key. A holder that does
// not look at Done — a process paused by GC or SIGSTOP past its lease —
// wakes up and writes with its old token; the fenced register refuses it
// once the new holder has written.
func TestPartitionedAndPausedHolder(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(strconv.Itoa(n)+" masters", func(t *testing.T) { partitionedAndPausedHolder(t, n) })
	}
}

func partitionedAndPausedHolder(t *testing.T, n int) {
	cl := startMasters(t, n)
	cuts := make([]*cutHook, n)
	for i := range cuts {
		cuts[i] = &cutHook{}
	}
	a := cl.newClientOn(cl.clients(hooks(cuts)...), short...)
	b := cl.newClient(short...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	reg := newRegister()
	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !reg.write(key, la.Token()) {
		t.Fatal("first write refused")
	}
	time.Sleep(2 * interval)
	for _, h := range cuts {
		h.cut.Store(true)
	}
	cutAt := time.Now()
	got := make(chan *redlock.Lock, 1)
	go func() {
		l, err := b.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	if !closedWithin(la.Done(), 2*ttl) {
		t.Fatal("the cut-off holder was not told")
	}
	told := time.Now()
	lb := <-got
	if lb == nil {
		return
	}
	bAt := time.Now()
	t.Logf("cut-off holder told %v after the cut, new holder in %v after the cut", told.Sub(cutAt).Round(time.Millisecond), bAt.Sub(cutAt).Round(time.Millisecond))
	if !told.Before(bAt) {
		t.Fatalf("the new holder got the key before the old one was told")
	}
	if told.Sub(cutAt) > ttl {
		t.Errorf("told %v after the cut, later than one TTL", told.Sub(cutAt))
	}
	if !reg.write(key, lb.Token()) {
		t.Fatal("the new holder's write was refused")
	}
	// The paused holder wakes up and writes without looking at Done.
	if reg.write(key, la.Token()) {
		t.Fatal("the register accepted the paused holder's stale token")
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range cuts {
		h.cut.Store(false)
	}
	if err := la.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("Release of the lost lock = %v", err)
	}
}

// A master that is down when the lock is released is left to its lease:
// the release confirmed by a quorum succeeds, and another client can take
// the key at once.
func TestReleaseWithAMasterDown(t *testing.T) {
	cl := startMasters(t, 3)
	c, other := cl.newClient(short...), cl.newClient(short...)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	cl.waitHeldOnAll(t, key)
	cl.servers[2].Kill()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release with one master of 3 down = %v", err)
	}
	if !errors.Is(l.Err(), renewlock.ErrReleased) {
		t.Fatalf("Err = %v", l.Err())
	}
	l2, err := other.TryAcquire(ctx, key)
	if err != nil {
		t.Fatalf("the key was not free on a quorum after the release: %v", err)
	}
	_ = l2.Release(ctx)
}

// A waiter cut off from every master but the key's gate must not keep the
// gate from the others: handed the gate, it finds no quorum in reach and
// lets it go, and a waiter behind it gets the lock.
func TestCutOffWaiterDoesNotBlockTheGate(t *testing.T) {
	cl := startMasters(t, 3)
	h, c := cl.newClient(short...), cl.newClient(short...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	g := redlock.GateOf(h, key)
	cuts := []*cutHook{{}, {}, {}}
	w := cl.newClientOn(cl.clients(hooks(cuts)...), short...)
	hl, err := h.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wdone := make(chan error, 1)
	go func() {
		_, err := w.Acquire(wctx, key)
		wdone <- err
	}()
	time.Sleep(100 * time.Millisecond) // w waits in the gate's queue first
	for i := range cuts {
		if i != g {
			cuts[i].cut.Store(true)
		}
	}
	cdone := make(chan error, 1)
	go func() {
		l, err := c.Acquire(ctx, key)
		if err == nil {
			err = l.Release(ctx)
		}
		cdone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := hl.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cdone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiter behind a cut-off one never got the lock")
	}
	wcancel()
	if err := <-wdone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cut-off waiter's Acquire = %v", err)
	}
}

// A lock taken with a bare quorum (a master was held elsewhere) takes that
// master as soon as it is free, and a master whose part was lost (restarted
// empty) again: it then survives any one master failing. Each new part
// stores a token no smaller than the lock's.
func TestHeldLockTakesTheMastersItLacks(t *testing.T) {
	cl := startMasters(t, 3)
	c := cl.newClient(short...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	g := redlock.GateOf(c, key)
	other := (g + 1) % 3
	out, err := renewlock.New(cl.servers[other].Client(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = out.Close() })
	ol, err := out.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := ol.Release(ctx); err != nil {
		t.Fatal(err)
	}
	cl.waitHeldOnAll(t, key) // within a renew interval or two
	tokenOn := func(i int) uint64 {
		v, err := cl.servers[i].Client().HGet(ctx, renewlock.DefaultKeyPrefix+key, "t").Uint64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if tok := tokenOn(other); tok < l.Token() {
		t.Errorf("the part taken later stores token %d, below the lock's %d", tok, l.Token())
	}
	// Lose one part (restart empty), get it back, then survive losing
	// another master for good.
	cl.servers[other].Restart()
	deadline := time.Now().Add(2 * time.Second)
	for !cl.heldOn(t, other, key) {
		if time.Now().After(deadline) {
			t.Fatal("the restarted master was never taken again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cl.servers[(g+2)%3].Kill()
	if closedWithin(l.Done(), 2*ttl) {
		t.Fatalf("lost with one master of 3 down: %v", l.Err())
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
