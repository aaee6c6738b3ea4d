package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// These tests feed the checker hand-made histories, each breaking one
// property, to show that every check can fail (and that a clean history
// passes). Times are in milliseconds.

const msec = int64(time.Millisecond)

type fake struct {
	h   *History
	wid int
}

func newFake() *fake {
	h := NewHistory()
	h.log = map[string][]workload.LogEntry{}
	h.end = 10_000 * msec
	return &fake{h: h}
}

func (f *fake) ev(e workload.Event) { f.h.events = append(f.h.events, e) }

// hold records a whole tenure: acquired over [call, ret], released at rel
// with class relClass ("" = clean); Done closes at rel (or at lostAt).
func (f *fake) hold(worker string, tok uint64, call, ret, rel int64, relClass string, lostAt int64) {
	f.ev(workload.Event{Kind: workload.KindAcquire, Worker: worker, Key: "k", Token: tok, Call: call * msec, Ret: ret * msec})
	doneAt, doneClass := rel, workload.ClassReleased
	if lostAt > 0 {
		doneAt, doneClass = lostAt, workload.ClassLost
	}
	f.ev(workload.Event{Kind: workload.KindDone, Worker: worker, Key: "k", Token: tok, Ret: doneAt * msec, Class: doneClass})
	e := workload.Event{Kind: workload.KindRelease, Worker: worker, Key: "k", Token: tok, Call: rel * msec, Ret: (rel + 1) * msec, Class: relClass}
	if relClass != "" {
		e.Err = relClass
	}
	f.ev(e)
}

// write records a write at [call, ret] and the register's decision, appended
// to the register log in call order.
func (f *fake) write(worker string, tok uint64, call, ret int64, ok bool) {
	f.wid++
	wid := fmt.Sprintf("%s#%d", worker, f.wid)
	f.ev(workload.Event{Kind: workload.KindWriteStart, Worker: worker, Key: "k", Token: tok, WID: wid, Call: call * msec})
	f.ev(workload.Event{Kind: workload.KindWrite, Worker: worker, Key: "k", Token: tok, WID: wid, Call: call * msec, Ret: ret * msec, OK: ok})
	f.h.log["k"] = append(f.h.log["k"], workload.LogEntry{Seq: len(f.h.log["k"]), Accepted: ok, WID: wid, Token: tok})
}

func check(f *fake, overlapAllowed bool) *Result {
	return f.h.Check(Limits{TTL: time.Second, OverlapAllowed: overlapAllowed, TakeoverSlack: 250 * time.Millisecond, CheckTimeout: 10 * time.Second})
}

func wantViolation(t *testing.T, r *Result, check string) {
	t.Helper()
	if len(r.Violations[check]) == 0 {
		t.Fatalf("no (%s) violation found; violations: %v", check, r.Violations)
	}
	t.Logf("(%s) found: %s", check, r.Violations[check][0])
}

func TestCheckerCleanHistoryPasses(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 10, "", 0)
	f.write("c0/k", 100, 2, 3, true)
	f.hold("c1/k", 200, 5, 11, 20, "", 0) // waited, woke on the release
	f.write("c1/k", 200, 12, 13, true)
	r := check(f, false)
	if len(r.Violations) > 0 || r.Acquisitions != 2 || r.Accepted != 2 {
		t.Fatalf("clean history: %+v", r)
	}
}

func TestCheckerCatchesTokenGoingDown(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 200, 0, 1, 10, "", 0)
	f.hold("c1/k", 100, 11, 12, 20, "", 0)
	wantViolation(t, check(f, false), "b")
}

func TestCheckerCatchesStaleWriteAccepted(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 30, workload.ClassLost, 25)
	f.hold("c1/k", 200, 10, 11, 40, "", 0)
	f.write("c1/k", 200, 12, 13, true)
	f.write("c0/k", 100, 14, 15, true) // a paused holder's write let through
	wantViolation(t, check(f, true), "b")
}

func TestCheckerCatchesOverlap(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 10, "", 0)
	f.hold("c1/k", 200, 2, 3, 20, "", 0) // returned while c0 still held
	wantViolation(t, check(f, false), "a")
	if r := check(f, true); r.Overlaps != 1 || len(r.Violations["a"]) != 0 {
		t.Fatalf("overlap where allowed: %+v", r)
	}
}

func TestCheckerCatchesLateLossSignal(t *testing.T) {
	f := newFake()
	// Acquired at 0 with a 1 s TTL, never renewed, told at 1.5 s.
	f.hold("c0/k", 100, 0, 1, 1600, workload.ClassLost, 1500)
	wantViolation(t, check(f, false), "c")

	// A short hiccup does not explain half a second of lateness.
	f.ev(workload.Event{Kind: workload.KindStall, Worker: InProcName, Call: 1000 * msec, Ret: 1015 * msec})
	wantViolation(t, check(f, false), "c")

	// The same, but the holder's process was not scheduled meanwhile.
	f.ev(workload.Event{Kind: workload.KindStall, Worker: InProcName, Call: 900 * msec, Ret: 1500 * msec})
	r := check(f, false)
	if len(r.Violations["c"]) != 0 || len(r.Starved) != 1 {
		t.Fatalf("late loss during a stall: violations %v, starved %v", r.Violations, r.Starved)
	}
}

func TestCheckerCatchesSlowTakeover(t *testing.T) {
	f := newFake()
	f.hold("p0/k", 100, 0, 1, 9000, "", 0)
	f.h.kills["p0"] = 100 * msec
	f.h.faults = append(f.h.faults, Fault{Kind: FaultProcKill, Target: "p0", Start: 100 * msec})
	f.hold("p1/k", 200, 50, 1400, 2000, "", 0) // 1.3 s after the kill
	wantViolation(t, check(f, false), "d")

	// The victim's own freeze does not excuse a slow takeover.
	f.ev(workload.Event{Kind: workload.KindStall, Worker: "p0", Call: 100 * msec, Ret: 3000 * msec})
	wantViolation(t, check(f, false), "d")
}

func TestCheckerCatchesSwallowedLoss(t *testing.T) {
	f := newFake()
	f.hold("c0/k", 100, 0, 1, 30, "", 0)  // thinks all went well
	f.hold("c1/k", 200, 5, 20, 40, "", 0) // yet held the key from 20 ms
	wantViolation(t, check(f, true), "e")
}
