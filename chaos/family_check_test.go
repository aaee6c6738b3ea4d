package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// Hand-made histories for the family's checks (family.go), as
// check_test.go does for the mutex: each check must fail when it should.

func checkKind(f *fake, kind string, limit int, overlapAllowed bool) *Result {
	return f.h.Check(Limits{
		TTL: time.Second, OverlapAllowed: overlapAllowed, TakeoverSlack: 250 * time.Millisecond, CheckTimeout: 10 * time.Second,
		Kinds: map[string]kindSpec{"k": {Kind: kind, Limit: limit}},
	})
}

// holdMode is fake.hold for a read-write lock's reader ("r") or writer ("w").
func (f *fake) holdMode(worker, mode string, tok uint64, call, ret, rel int64, relClass string, lostAt int64) {
	f.hold(worker, tok, call, ret, rel, relClass, lostAt)
	f.h.events[len(f.h.events)-3].Mode = mode
}

// rwOp records a read ("r") or write ("w") on the read-write lock's
// resource, with the resource's decision.
func (f *fake) rwOp(worker, op string, tok uint64, call, ret int64, ok bool) {
	f.wid++
	wid := fmt.Sprintf("%s#%d", worker, f.wid)
	e := workload.Event{Kind: workload.KindWriteStart, Worker: worker, Key: "k", Token: tok, WID: wid, Call: call * msec, Mode: op}
	if op == "r" {
		e.Op = "r"
	}
	f.ev(e)
	e.Kind, e.Ret, e.OK = workload.KindWrite, ret*msec, ok
	f.ev(e)
	f.h.log["k"] = append(f.h.log["k"], workload.LogEntry{Seq: len(f.h.log["k"]), Accepted: ok, WID: wid, Token: tok, Op: op})
}

// permitWrite records a write to a permit's own resource.
func (f *fake) permitWrite(worker string, tok uint64, call, ret int64, ok bool) {
	f.wid++
	wid := fmt.Sprintf("%s#%d", worker, f.wid)
	res := workload.PermitResource("k", worker)
	e := workload.Event{Kind: workload.KindWriteStart, Worker: worker, Key: "k", Res: res, Token: tok, WID: wid, Call: call * msec}
	f.ev(e)
	e.Kind, e.Ret, e.OK = workload.KindWrite, ret*msec, ok
	f.ev(e)
	f.h.log[res] = append(f.h.log[res], workload.LogEntry{Seq: len(f.h.log[res]), Accepted: ok, WID: wid, Token: tok})
}

func wantClean(t *testing.T, r *Result) {
	t.Helper()
	if len(r.Violations) > 0 {
		t.Fatalf("violations in a clean history: %v", r.Violations)
	}
}

func TestFamilyCheckerSemaphoreLimit(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 50, "", 0)
	f.hold("c1/k", 200, 2, 3, 60, "", 0)
	f.permitWrite("c0/k", 100, 10, 11, true)
	f.permitWrite("c1/k", 200, 12, 13, true)
	wantClean(t, checkKind(f, workload.KindSemaphore, 2, false))

	f.hold("c2/k", 300, 4, 5, 70, "", 0) // a third permit while two are valid
	r := checkKind(f, workload.KindSemaphore, 2, false)
	wantViolation(t, r, "a")
	wantViolation(t, r, "e") // and nobody was told
	if r := checkKind(f, workload.KindSemaphore, 2, true); r.Overlaps != 1 || len(r.Violations["a"]) != 0 {
		t.Fatalf("overlap where allowed: %+v", r)
	}
	if r := checkKind(f, workload.KindSemaphore, 3, false); len(r.Violations) != 0 {
		t.Fatalf("three permits of three: %v", r.Violations)
	}
}

func TestFamilyCheckerSemaphoreTold(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 50, workload.ClassLost, 40) // told: its permit went to c2
	f.hold("c1/k", 200, 2, 3, 60, "", 0)
	f.hold("c2/k", 300, 4, 5, 70, "", 0)
	r := checkKind(f, workload.KindSemaphore, 2, true)
	if len(r.Violations["e"]) != 0 {
		t.Fatalf("one of three told, limit 2: %v", r.Violations)
	}
}

func TestFamilyCheckerPermitTokensRise(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 200, 0, 1, 10, "", 0)
	f.hold("c1/k", 100, 20, 21, 30, "", 0) // acquired later with a smaller token
	wantViolation(t, checkKind(f, workload.KindSemaphore, 2, false), "b")
}

func TestFamilyCheckerPermitResource(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 10, "", 0)
	f.permitWrite("c0/k", 100, 2, 3, true)
	f.hold("c0/k", 200, 11, 12, 20, "", 0)
	f.permitWrite("c0/k", 200, 13, 14, true)
	f.permitWrite("c0/k", 100, 15, 16, true) // the older permit's write let through
	wantViolation(t, checkKind(f, workload.KindSemaphore, 2, false), "b")
}

func TestFamilyCheckerRWExclusion(t *testing.T) {
	f := newFake()
	f.holdMode("c0/k", "r", 100, 0, 1, 50, "", 0)
	f.holdMode("c1/k", "r", 200, 2, 3, 60, "", 0) // readers together: fine
	f.holdMode("c2/k", "w", 300, 70, 71, 80, "", 0)
	wantClean(t, checkKind(f, workload.KindRW, 0, false))

	f.holdMode("c3/k", "w", 400, 72, 73, 90, "", 0) // a second writer
	wantViolation(t, checkKind(f, workload.KindRW, 0, false), "a")

	g := newFake()
	g.holdMode("c0/k", "r", 100, 0, 1, 50, "", 0)
	g.holdMode("c1/k", "w", 200, 2, 3, 60, "", 0) // a writer beside a reader
	r := checkKind(g, workload.KindRW, 0, false)
	wantViolation(t, r, "a")
	wantViolation(t, r, "e") // the reader was never told
}

func TestFamilyCheckerRWFencing(t *testing.T) {
	clean := func() *fake {
		f := newFake()
		f.holdMode("c0/k", "w", 100, 0, 1, 10, "", 0)
		f.rwOp("c0/k", "w", 100, 2, 3, true)
		f.holdMode("c1/k", "r", 200, 11, 12, 30, "", 0)
		f.rwOp("c1/k", "r", 200, 13, 14, true)
		return f
	}
	wantClean(t, checkKind(clean(), workload.KindRW, 0, false))

	// A stale writer's write after a newer read, accepted: the reader saw
	// a value that was then overwritten by an older writer.
	f := clean()
	f.rwOp("c0/k", "w", 100, 20, 21, true)
	wantViolation(t, checkKind(f, workload.KindRW, 0, true), "b")

	// The same write refused is right.
	f = clean()
	f.rwOp("c0/k", "w", 100, 20, 21, false)
	if r := checkKind(f, workload.KindRW, 0, true); len(r.Violations["b"]) != 0 {
		t.Fatalf("stale write refused: %v", r.Violations)
	}

	// A stale reader served after a newer write.
	g := newFake()
	g.holdMode("c0/k", "r", 100, 0, 1, 30, workload.ClassLost, 25)
	g.holdMode("c1/k", "w", 200, 10, 11, 40, "", 0)
	g.rwOp("c1/k", "w", 200, 12, 13, true)
	g.rwOp("c0/k", "r", 100, 14, 15, true)
	wantViolation(t, checkKind(g, workload.KindRW, 0, true), "b")
}

func TestFamilyCheckerSharedLead(t *testing.T) {
	f := newFake()
	// Acquired at 0; the observer saw its share's lease end at 1200 ms
	// (x<id> − TIME); told at 1300 ms: too late.
	f.hold("c0/k", 100, 0, 1, 1400, workload.ClassLost, 1300)
	f.h.samples = append(f.h.samples, Sample{Key: "k", Sent: 200 * msec, Shares: []ShareSample{{Token: 100, Left: time.Second}}})
	wantViolation(t, checkKind(f, workload.KindSemaphore, 2, false), "c")

	g := newFake()
	g.hold("c0/k", 100, 0, 1, 1400, workload.ClassLost, 1180)
	g.h.samples = append(g.h.samples, Sample{Key: "k", Sent: 200 * msec, Shares: []ShareSample{{Token: 100, Left: time.Second}}})
	r := checkKind(g, workload.KindSemaphore, 2, false)
	if len(r.Violations["c"]) != 0 || len(r.Leads) != 1 || r.Leads[0] != 20*time.Millisecond {
		t.Fatalf("told 20 ms before the share's end: leads %v, violations %v", r.Leads, r.Violations)
	}
}

func TestFamilyCheckerElection(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 10, "", 0)
	f.write("c0/k", 100, 2, 3, true)
	f.hold("c1/k", 200, 5, 11, 20, "", 0)
	f.write("c1/k", 200, 12, 13, true)
	wantClean(t, checkKind(f, workload.KindElection, 0, false))
	f.hold("c2/k", 300, 14, 15, 30, "", 0) // a second leader
	wantViolation(t, checkKind(f, workload.KindElection, 0, false), "a")
}

func TestFamilyCheckerSharedTakeover(t *testing.T) {
	build := func() *fake {
		f := newFake()
		f.hold("p0/k", 100, 0, 1, 9000, "", 0) // killed at 100 ms, holding the only permit
		f.h.kills["p0"] = 100 * msec
		f.h.faults = append(f.h.faults, Fault{Kind: FaultProcKill, Target: "p0", Start: 100 * msec})
		return f
	}
	// c1 waited from 50 ms and got the permit 1.3 s after the kill.
	f := build()
	f.hold("c1/k", 200, 50, 1400, 2000, "", 0)
	f.h.events[len(f.h.events)-3].Blk = true
	wantViolation(t, checkKind(f, workload.KindSemaphore, 1, false), "d")

	// On time: fine.
	f = build()
	f.hold("c1/k", 200, 50, 1050, 2000, "", 0)
	f.h.events[len(f.h.events)-3].Blk = true
	if r := checkKind(f, workload.KindSemaphore, 1, false); len(r.Violations) != 0 || len(r.Takeovers) != 1 {
		t.Fatalf("takeover on time: %+v", r)
	}

	// Late because a queued waiter of p0's was granted the permit after
	// the kill (a token nobody reported, held by p0): the grant's lease
	// ends with the dead waiter's place, so this is late all the same —
	// failed, with the grant reported.
	f = build()
	f.hold("c1/k", 200, 50, 1400, 2000, "", 0)
	f.h.events[len(f.h.events)-3].Blk = true
	f.h.samples = append(f.h.samples, Sample{Key: "k", Sent: 500 * msec, Shares: []ShareSample{{Token: 150, Left: 900 * time.Millisecond, Holder: "p0"}}})
	r := checkKind(f, workload.KindSemaphore, 1, false)
	wantViolation(t, r, "d")
	if len(r.GhostGrants) != 1 {
		t.Fatalf("the grant to the dead process's waiter is not reported: %v", r.GhostGrants)
	}
}
