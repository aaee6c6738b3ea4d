//go:build linux

package redlock_test

// Redlock × clock offset (GUARANTEES.md) on masters whose wall clocks are
// really apart: each redis-server reads its own internal/clockshim clock
// (an LD_PRELOAD shim; the host's clock does not move).

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/clockshim"
	"github.com/renewlock/renewlock/internal/redistest"
	"github.com/renewlock/renewlock/redlock"
)

// startMastersWithClocks starts one master per offset, each reading its own
// clock set to that offset from the host's.
func startMastersWithClocks(t *testing.T, offsets ...time.Duration) (*cluster, []*clockshim.Clock) {
	t.Helper()
	c := &cluster{t: t}
	var clocks []*clockshim.Clock
	for _, off := range offsets {
		clk, err := clockshim.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = clk.Close() })
		if err := clk.Set(off); err != nil {
			t.Fatal(err)
		}
		clocks = append(clocks, clk)
		c.servers = append(c.servers, redistest.StartEnv(t, clk.Env()))
	}
	return c, clocks
}

// GUARANTEES.md: Redlock 3 and 5 × clock offset. Masters' clocks an hour
// apart (3: +1 h, 0, −1 h; 5: +1 h, +30 min, 0, −30 min, −1 h): tokens
// rise strictly through hand-offs, holders whose leases expired
// unreleased, the death of the master that is ahead and a minority
// restarting empty (see tokenTrial).
func TestTokensStayMonotonicWithMastersClocksApart(t *testing.T) {
	for _, offsets := range [][]time.Duration{
		{time.Hour, 0, -time.Hour},
		{time.Hour, 30 * time.Minute, 0, -30 * time.Minute, -time.Hour},
	} {
		t.Run(strconv.Itoa(len(offsets))+" masters", func(t *testing.T) {
			cl, _ := startMastersWithClocks(t, offsets...)
			key := uniqueKey(t)
			tokens := tokenTrial(t, cl, key)
			if ahead := uint64(time.Now().Add(59 * time.Minute).UnixMicro()); slices.Max(tokens[:5]) < ahead {
				t.Fatalf("the master an hour ahead was in no quorum: tokens %v", tokens)
			}
			t.Logf("tokens with the masters' clocks at %v: %v", offsets, tokens)
		})
	}
}

// GUARANTEES.md: Redlock 3 and 5 × clock offset, a step forward. A master
// whose clock jumps past the lease's end drops its part at once: a
// minority of such masters, and the holder keeps the lock (and takes them
// again at its next renewal). A majority is the limit: if the key's gate
// master is among them, another client gets a quorum while the holder
// still believes it holds the lock, until the holder's next renewal; if
// the gate's clock did not jump, every attempt yields to the holder there
// until its renewal finds the quorum gone and it lets go, so the holder
// usually learns first (not always: the gate is a queue, not a safety
// rule). Either way the newcomer's token is larger.
func TestMastersClockStepForward(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(strconv.Itoa(n)+" masters", func(t *testing.T) { clockStepForward(t, n) })
	}
}

func clockStepForward(t *testing.T, n int) {
	q := redlockQuorum(n)
	t.Run("a minority", func(t *testing.T) {
		cl, clocks := startMastersWithClocks(t, make([]time.Duration, n)...)
		a, b := cl.newClient(short...), cl.newClient(short...)
		ctx := ctxT(t, 30*time.Second)
		key := uniqueKey(t)
		la, err := a.Acquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		cl.waitHeldOnAll(t, key)
		for i := range n - q {
			if _, err := clocks[i].Step(2 * ttl); err != nil {
				t.Fatal(err)
			}
			if cl.heldOn(t, i, key) {
				t.Fatalf("master %d still holds the key after its clock jumped", i)
			}
		}
		if _, err := b.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotAcquired) {
			t.Fatalf("another client after %d masters' clocks jumped: %v", n-q, err)
		}
		cl.waitHeldOnAll(t, key) // taken again at the next renewal
		if closedWithin(la.Done(), 2*ttl) {
			t.Fatalf("lock lost when %d of %d masters' clocks jumped: %v", n-q, n, la.Err())
		}
		if err := la.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
	// A majority: whether another client gets in before the holder learns
	// depends on the key's gate master (where waiters queue, and every
	// attempt yields to the gate's holder).
	for _, gateStepped := range []bool{true, false} {
		name := "a majority with the gate"
		if !gateStepped {
			name = "a majority without the gate"
		}
		t.Run(name, func(t *testing.T) {
			cl, clocks := startMastersWithClocks(t, make([]time.Duration, n)...)
			a, b := cl.newClient(short...), cl.newClient(short...)
			ctx := ctxT(t, 30*time.Second)
			key := uniqueKey(t)
			gate := redlock.GateOf(a, key)
			var others []int
			for i := range clocks {
				if i != gate {
					others = append(others, i)
				}
			}
			step := others[:q] // the masters that jump: a quorum
			if gateStepped {
				step = append([]int{gate}, others[:q-1]...)
			}
			la, err := a.Acquire(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			cl.waitHeldOnAll(t, key)
			for _, i := range step {
				if _, err := clocks[i].Step(2 * ttl); err != nil {
					t.Fatal(err)
				}
			}
			stepped := time.Now()
			var lb *redlock.Lock
			for lb == nil {
				if l, err := b.TryAcquire(ctx, key); err == nil {
					lb = l
				} else if !errors.Is(err, renewlock.ErrNotAcquired) {
					t.Fatal(err)
				}
			}
			bAt := time.Now()
			toldFirst := closedWithin(la.Done(), 0)
			if !closedWithin(la.Done(), 2*interval+100*time.Millisecond) {
				t.Fatal("the old holder was not told within one renew interval")
			}
			told := time.Now()
			if !errors.Is(la.Err(), renewlock.ErrLeaseLost) {
				t.Fatalf("Err = %v", la.Err())
			}
			// Who learns first is logged, not asserted: the gate is no
			// safety rule (attempt.go) — an attempt waits for the gate's
			// answer only briefly, so on a loaded machine a slow answer
			// does not stop another client even without the gate's jump.
			if toldFirst {
				t.Logf("clocks of masters %v (gate %d) jumped %v: the holder was told first; another client got the key %v after the jump",
					step, gate, 2*ttl, bAt.Sub(stepped).Round(time.Millisecond))
			} else {
				t.Logf("clocks of masters %v (gate %d) jumped %v: another client got the key %v after the jump; the old holder was told %v after that (both valid)",
					step, gate, 2*ttl, bAt.Sub(stepped).Round(time.Millisecond), told.Sub(bAt).Round(time.Millisecond))
			}
			if lb.Token() <= la.Token() {
				t.Fatalf("tokens went backwards: %d after %d", lb.Token(), la.Token())
			}
			reg := newRegister()
			if !reg.write(key, lb.Token()) || reg.write(key, la.Token()) {
				t.Fatal("the fenced register did not keep the old holder out")
			}
			_ = lb.Release(ctx)
		})
	}
}

// GUARANTEES.md: Redlock 3 × clock offset — the limit. Once the key is
// gone from a quorum (released), the next token comes from the masters'
// clocks: every clock stepped back a minute issues a token a minute lower.
func TestLimitMastersClocksStepBackAfterRelease(t *testing.T) {
	cl, clocks := startMastersWithClocks(t, 0, 0, 0)
	c := cl.newClient(short...)
	ctx := ctxT(t, 30*time.Second)
	key := uniqueKey(t)
	la, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	cl.waitFree(t, key)
	for _, clk := range clocks {
		if _, err := clk.Step(-time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	lb, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release(ctx)
	t.Logf("released, then every master's clock stepped back a minute: token %d after %d", lb.Token(), la.Token())
	if lb.Token() >= la.Token() {
		t.Fatalf("token %d after %d: the hole this test shows is closed", lb.Token(), la.Token())
	}
}
