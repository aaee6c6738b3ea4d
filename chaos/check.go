package chaos

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// Limits says what a scenario may legitimately do.
type Limits struct {
	TTL time.Duration
	// OverlapAllowed: the fault is one where DESIGN.md's "Limits" say two
	// holders may both be before their deadlines (a frozen holder, Redis
	// losing its data). Overlaps are then measured, not failed.
	OverlapAllowed bool
	// TakeoverSlack is added to the TTL for check (d).
	TakeoverSlack time.Duration
	// CheckTimeout bounds porcupine per key.
	CheckTimeout time.Duration
	// Kinds gives the kind of lock of each key (family.go); a key not in
	// it is a mutex. Keys, if not nil, restricts the check to these keys
	// (one kind's row of the family table).
	Kinds map[string]kindSpec
	Keys  []string
}

// Result is the outcome of checking one scenario's history.
type Result struct {
	Acquisitions  int
	AcquireErrors map[string]int // by class
	Writes        int            // with a known outcome
	Accepted      int
	Rejected      int // stale writes the fencing token stopped
	Losses        int // holders told ErrLeaseLost
	LostAtRelease int // of which told only by the Release they had begun
	ReleaseErrors int // Release returned a non-loss error (Redis unreachable)

	Overlaps   int
	MaxOverlap time.Duration

	Leads      []time.Duration // (c) loss signalled this long before Redis expiry
	LateLosses []string        // losses the limits allow to come late, explained
	Takeovers  []time.Duration // (d)

	// Starved lists losses signalled late (and overlaps they caused) while
	// the holder's process was not being scheduled: a paused holder in the
	// sense of the limits, not a library fault.
	Starved         []string
	StarvedOverlaps int
	MaxStall        time.Duration // longest scheduling stall of any client process

	Violations map[string][]string // check letter → messages

	// The lock family (family.go): reads of read-write locks' resources
	// (also counted in Writes, Accepted and Rejected), and writes accepted
	// although sent after their holder's lease could have ended in Redis
	// (a frozen permit holder writing to its own resource, which no newer
	// token reached: nothing could refuse it).
	Reads, ReadsRejected int
	StaleAccepted        int
	// GhostGrants: takeovers of a shared lock delayed past TTL + slack
	// (but within 2×TTL + slack) because a release granted the room to a
	// waiter of the victim's that was still queued: that grant's lease runs
	// a whole TTL from the grant, and nobody renews it.
	GhostGrants []string
}

func (r *Result) violate(check, format string, args ...any) {
	if r.Violations == nil {
		r.Violations = make(map[string][]string)
	}
	r.Violations[check] = append(r.Violations[check], fmt.Sprintf(format, args...))
}

// holder is one acquisition and everything its holder saw.
type holder struct {
	worker string
	key    string
	token  uint64
	acq    workload.Event
	done   *workload.Event
	rel    *workload.Event
	killed int64  // when its process was SIGKILLed, or 0
	start  int64  // interval: acquire returned
	end    int64  // interval: told of loss, began releasing, or killed
	mode   string // a read-write lock's "r" or "w"
	// starved: told late while its process was stalled.
	starved bool
}

func (h *holder) String() string {
	return fmt.Sprintf("%s token %d", h.worker, h.token)
}

type writeOp struct {
	start    workload.Event
	fin      *workload.Event // KindWrite or KindWriteErr
	logged   *workload.LogEntry
	accepted bool
	ret      int64
}

// Check checks a finished history against (a)–(e).
func (h *History) Check(lim Limits) *Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &Result{AcquireErrors: make(map[string]int)}
	ttl := int64(lim.TTL)

	// Rebuild holders and writes from the events.
	type hid struct {
		worker string
		token  uint64
	}
	holders := make(map[hid]*holder)
	var order []*holder
	writes := make(map[string]*writeOp)
	var worder []*writeOp
	h.stalls = nil
	in := func(key string) bool { return lim.Keys == nil || slices.Contains(lim.Keys, key) }
	for i := range h.events {
		e := h.events[i]
		id := hid{e.Worker, e.Token}
		if e.Kind != workload.KindStall && e.Kind != workload.KindWriteStart && e.Kind != workload.KindWrite &&
			e.Kind != workload.KindWriteErr && !in(e.Key) {
			continue // another kind's row; its writes are resolved below
		}
		switch e.Kind {
		case workload.KindAcquire:
			if holders[id] != nil {
				r.violate("b", "token %d issued twice to %s", e.Token, e.Worker)
				continue
			}
			hd := &holder{worker: e.Worker, key: e.Key, token: e.Token, acq: e, start: e.Ret, mode: e.Mode}
			holders[id] = hd
			order = append(order, hd)
			r.Acquisitions++
		case workload.KindAcquireErr:
			r.AcquireErrors[e.Class]++
			if e.Class == "" {
				r.violate("e", "%s: acquire failed without an error", e.Worker)
			}
		case workload.KindDone:
			if hd := holders[id]; hd != nil {
				hd.done = &h.events[i]
			}
		case workload.KindRelease:
			if hd := holders[id]; hd != nil {
				hd.rel = &h.events[i]
			}
		case workload.KindStall:
			h.stalls = append(h.stalls, e)
			if h.faultDuring(FaultProcStop, e.Worker, e.Call, e.Ret) == nil { // not the injected freeze
				r.MaxStall = max(r.MaxStall, time.Duration(e.Ret-e.Call))
			}
		case workload.KindWriteStart:
			w := &writeOp{start: e}
			writes[e.WID] = w
			worder = append(worder, w)
		case workload.KindWrite, workload.KindWriteErr:
			if w := writes[e.WID]; w != nil {
				w.fin = &h.events[i]
			}
		}
	}
	for _, hd := range order {
		h.finishInterval(hd)
	}
	byKey := make(map[string][]*holder)
	for _, hd := range order {
		byKey[hd.key] = append(byKey[hd.key], hd)
	}

	// Resolve write outcomes against the register's own log.
	for key, entries := range h.log {
		for i := range entries {
			en := &entries[i]
			w := writes[en.WID]
			if w == nil {
				r.violate("b", "register log of %q has write %s that no worker started", key, en.WID)
				continue
			}
			if w.logged != nil {
				r.violate("b", "write %s applied twice", en.WID)
			}
			w.logged = en
		}
	}
	for _, w := range worder {
		if !in(w.start.Key) {
			continue
		}
		switch {
		case w.fin != nil && w.fin.Kind == workload.KindWrite:
			if w.logged == nil {
				r.violate("b", "write %s acknowledged but missing from the register log", w.start.WID)
				continue
			}
			if w.logged.Accepted != w.fin.OK {
				r.violate("b", "write %s: reply %v but register log %v", w.start.WID, w.fin.OK, w.logged.Accepted)
			}
			w.accepted, w.ret = w.fin.OK, w.fin.Ret
		case w.logged != nil:
			// No reply (worker killed, or the resource connection failed):
			// the log knows the outcome, not when it happened.
			if w.fin != nil {
				r.violate("e", "write %s failed for the worker (%s) but was applied", w.start.WID, w.fin.Err)
			}
			w.accepted, w.ret = w.logged.Accepted, math.MaxInt64/2
		default:
			if w.fin != nil {
				r.violate("e", "write %s failed: %s", w.start.WID, w.fin.Err)
			}
			continue // never happened
		}
		r.Writes++
		if w.accepted {
			r.Accepted++
		} else {
			r.Rejected++
		}
		if w.start.Op == "r" {
			r.Reads++
			if !w.accepted {
				r.ReadsRejected++
			}
		}
	}
	worder = slices.DeleteFunc(worder, func(w *writeOp) bool { return !in(w.start.Key) })

	h.checkLeads(r, ttl, order)
	if len(lim.Kinds) == 0 {
		// Every key a mutex: the original suite.
		h.checkOverlap(r, lim, byKey)
		h.checkFencing(r, lim, byKey, worder, h.log)
		h.checkTakeover(r, lim, byKey)
		h.checkErrors(r, byKey, lim.Kinds)
	} else {
		h.checkFamily(r, lim, order, byKey, worder)
	}
	for _, n := range h.notes {
		r.violate("e", "%s", n)
	}
	return r
}

// finishInterval sets the end of hd's validity interval (and when its
// process was killed, if it was): acquire returned → told of loss, began
// releasing, or killed, whichever came first; the end of the history if
// none did.
func (h *History) finishInterval(hd *holder) {
	if t, ok := h.kills[workload.WorkerOf(hd.worker)]; ok && t >= hd.start {
		hd.killed = t
	}
	hd.end = h.end
	if hd.done != nil && hd.done.Class == workload.ClassLost {
		hd.end = min(hd.end, hd.done.Ret)
	}
	if hd.rel != nil {
		hd.end = min(hd.end, hd.rel.Call)
	}
	if hd.killed != 0 {
		hd.end = min(hd.end, hd.killed)
	}
}

// checkOverlap is (a).
func (h *History) checkOverlap(r *Result, lim Limits, byKey map[string][]*holder) {
	for key, hs := range byKey {
		hs = slices.Clone(hs)
		sort.Slice(hs, func(i, j int) bool { return hs[i].start < hs[j].start })
		for i, a := range hs {
			for _, b := range hs[i+1:] {
				if b.start >= a.end {
					continue
				}
				ov := time.Duration(min(a.end, b.end) - b.start)
				r.Overlaps++
				r.MaxOverlap = max(r.MaxOverlap, ov)
				if a.starved || b.starved {
					r.StarvedOverlaps++
				} else if !lim.OverlapAllowed {
					r.violate("a", "key %q: %s and %s both valid for %v", key, a, b, ov)
				}
			}
		}
	}
}

// The porcupine model: state is the largest token issued and the largest
// token the register accepted. An acquisition must get a token above every
// token issued before it; an accepted write must carry a token no smaller
// than every write accepted before it; a rejected write must have been stale.
type regState struct{ issued, written uint64 }

type opInput struct {
	acquire bool
	token   uint64
	key     string
	wid     string
}

var fencingModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := make(map[string][]porcupine.Operation)
		var keys []string
		for _, op := range history {
			k := op.Input.(opInput).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return regState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(regState), input.(opInput)
		if in.acquire {
			if in.token <= s.issued {
				return false, s
			}
			s.issued = in.token
			return true, s
		}
		if output.(bool) {
			if in.token < s.written {
				return false, s
			}
			s.written = in.token
			return true, s
		}
		return in.token < s.written, s
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		in := input.(opInput)
		if in.acquire {
			return fmt.Sprintf("acquire → %d", in.token)
		}
		return fmt.Sprintf("write %s(%d) → %v", in.wid, in.token, output)
	},
}

// checkFencing is (b).
func (h *History) checkFencing(r *Result, lim Limits, byKey map[string][]*holder, worder []*writeOp, logs map[string][]workload.LogEntry) {
	var ops []porcupine.Operation
	for _, hs := range byKey {
		for _, hd := range hs {
			ops = append(ops, porcupine.Operation{
				Input: opInput{acquire: true, token: hd.token, key: hd.key},
				Call:  hd.acq.Call, Return: hd.acq.Ret,
			})
		}
	}
	for _, w := range worder {
		if w.ret == 0 {
			continue
		}
		ops = append(ops, porcupine.Operation{
			Input:  opInput{token: w.start.Token, key: resourceOf(w.start), wid: w.start.WID},
			Output: w.accepted,
			Call:   w.start.Call, Return: w.ret,
		})
	}
	switch res := porcupine.CheckOperationsTimeout(fencingModel, ops, lim.CheckTimeout); res {
	case porcupine.Ok:
	case porcupine.Unknown:
		r.violate("b", "porcupine did not finish within %v on %d operations", lim.CheckTimeout, len(ops))
	default:
		r.violate("b", "history of %d acquisitions and writes is not linearizable for a fenced register with increasing tokens", len(ops))
	}
	// The register's own serial order, checked directly as well.
	for key, entries := range logs {
		var maxTok uint64
		for _, en := range entries {
			switch {
			case en.Accepted && en.Token < maxTok:
				r.violate("b", "key %q: register accepted token %d after %d", key, en.Token, maxTok)
			case !en.Accepted && en.Token >= maxTok:
				r.violate("b", "key %q: register rejected token %d though the largest was %d", key, en.Token, maxTok)
			}
			if en.Accepted {
				maxTok = max(maxTok, en.Token)
			}
		}
	}
}

// checkLeads is (c): every loss is signalled before Redis expires the key,
// except for a holder that was frozen or whose key vanished with a Redis
// restart (the documented limits), which are reported.
func (h *History) checkLeads(r *Result, ttl int64, order []*holder) {
	expiry := h.observedExpiry()
	for _, hd := range order {
		if hd.done == nil || hd.done.Class != workload.ClassLost {
			continue
		}
		r.Losses++
		told := hd.done.Ret
		if hd.rel != nil && hd.rel.Call <= told {
			// Learned while releasing: the holder had stopped acting, and
			// Release had already taken the lock out of renewal.
			r.LostAtRelease++
			continue
		}
		// Lower bounds of the expiry instant: the acquire was executed
		// after it was called, and, through the server clock, no earlier
		// than the token says; renewals seen by the observer extend it.
		e, eCall, eTok, eObs := h.expiryBound(hd, ttl, expiry)
		if f := h.faultDuring(FaultRedisKill, "", hd.acq.Call, told); f != nil {
			f = h.lastFaultBefore(FaultRedisKill, "", hd.acq.Call, told) // the restart it learned of
			r.LateLosses = append(r.LateLosses, fmt.Sprintf("key vanished in a Redis restart, told %v later", time.Duration(told-f.Start).Round(time.Millisecond)))
			continue
		}
		if f := h.faultDuring(FaultProcStop, workload.WorkerOf(hd.worker), hd.acq.Call, told); f != nil {
			r.LateLosses = append(r.LateLosses, fmt.Sprintf("holder frozen %v, told %v after Redis could expire the key",
				time.Duration(f.End-f.Start).Round(time.Millisecond), time.Duration(told-e).Round(time.Millisecond)))
			continue
		}
		lead := time.Duration(e - told)
		r.Leads = append(r.Leads, lead)
		if lead <= 0 {
			// The process should have signalled at the validity deadline,
			// TTL·drift + margin (20 ms with the defaults) before e; was it
			// scheduled at all then?
			// Excused only if the process was stalled for at least half
			// of the time between that deadline and the signal.
			from := e - int64(20*time.Millisecond)
			if st := h.stalledWithin(processOf(hd.worker), from, told); st >= time.Duration(told-from)/2 {
				hd.starved = true
				r.Starved = append(r.Starved, fmt.Sprintf("%s told %v late; its process was stalled %v of that window", hd, -lead, st))
				continue
			}
			r.violate("c", "%s: told of loss %v after Redis could expire the key (acquire called %v, returned %v before told; expiry bounds: call %v, token %v, observed %v before told)",
				hd, -lead, time.Duration(told-hd.acq.Call), time.Duration(told-hd.acq.Ret), time.Duration(told-eCall), time.Duration(told-eTok), time.Duration(told-eObs))
		}
	}
}

// observedExpiry returns, for every key/token the observer saw owning its
// key, the latest instant its PTTL said Redis would expire it.
func (h *History) observedExpiry() map[string]int64 {
	expiry := make(map[string]int64) // key/token → latest known expiry
	for _, s := range h.samples {
		for _, sh := range s.Shares { // holders of a shared lock: their own lease
			if sh.Left > 0 {
				k := fmt.Sprintf("%s/%d", s.Key, sh.Token)
				expiry[k] = max(expiry[k], s.Sent+int64(sh.Left))
			}
		}
		if !s.Owned || s.PTTL <= 0 {
			continue
		}
		k := fmt.Sprintf("%s/%d", s.Key, s.Token)
		expiry[k] = max(expiry[k], s.Sent+int64(s.PTTL))
	}
	return expiry
}

// expiryBound returns a lower bound e of the instant Redis could expire
// hd's lease, and the three bounds it is the largest of: the acquire was
// executed after it was called, and, through the server clock, no earlier
// than the token says; renewals seen by the observer extend it.
func (h *History) expiryBound(hd *holder, ttl int64, observed map[string]int64) (e, eCall, eTok, eObs int64) {
	eCall = hd.acq.Call + ttl
	eTok = int64(hd.token)*1000 - h.clockOffset + ttl
	eObs = observed[fmt.Sprintf("%s/%d", hd.key, hd.token)]
	return max(eCall, eTok, eObs), eCall, eTok, eObs
}

// processOf maps a worker loop to the process whose stalls affect it.
func processOf(worker string) string {
	w := workload.WorkerOf(worker)
	if strings.HasPrefix(w, "c") {
		return InProcName
	}
	return w
}

// stalledWithin returns how much of [from, to] process spent stalled.
func (h *History) stalledWithin(process string, from, to int64) time.Duration {
	var total int64
	for _, s := range h.stalls {
		if s.Worker == process {
			total += max(0, min(s.Ret, to)-max(s.Call, from))
		}
	}
	return time.Duration(total)
}

// anyStall returns the longest stall overlapping [from, to] of any process
// but victim (whose freeze is the fault itself).
func (h *History) anyStall(victim string, from, to int64) time.Duration {
	var longest time.Duration
	for _, s := range h.stalls {
		if s.Worker != victim && s.Call <= to && s.Ret >= from {
			longest = max(longest, time.Duration(s.Ret-s.Call))
		}
	}
	return longest
}

// faultDuring returns a fault of kind (against target, if given) active at
// some point in [from, to].
func (h *History) faultDuring(kind, target string, from, to int64) *Fault {
	for i := range h.faults {
		f := &h.faults[i]
		if f.Kind != kind || (target != "" && f.Target != target) {
			continue
		}
		end := f.End
		if end == 0 {
			end = f.Start
		}
		if f.Start <= to && end >= from {
			return f
		}
	}
	return nil
}

// lastFaultBefore returns the latest fault of kind (against target, if
// given) that started in [from, to], or the one active at from.
func (h *History) lastFaultBefore(kind, target string, from, to int64) *Fault {
	var last *Fault
	for i := range h.faults {
		f := &h.faults[i]
		if f.Kind == kind && (target == "" || f.Target == target) && f.Start <= to && (f.Start >= from || f.End >= from) {
			last = f
		}
	}
	return last
}

// checkTakeover is (d): after a holder's process is killed or frozen, or the
// holder is cut off, another worker holds its key within TTL + slack.
func (h *History) checkTakeover(r *Result, lim Limits, byKey map[string][]*holder) {
	bound := int64(lim.TTL + lim.TakeoverSlack)
	for _, f := range h.faults {
		if f.Target == "" || (f.Kind != FaultProcKill && f.Kind != FaultProcStop && f.Kind != FaultPartition) {
			continue
		}
		for key, hs := range byKey {
			held := false
			for _, hd := range hs {
				if workload.WorkerOf(hd.worker) == f.Target && hd.start <= f.Start && hd.end >= f.Start {
					held = true
				}
			}
			if !held {
				continue
			}
			next := int64(-1)
			for _, hd := range hs {
				if workload.WorkerOf(hd.worker) != f.Target && hd.start > f.Start && (next < 0 || hd.start < next) {
					next = hd.start
				}
			}
			switch {
			case next < 0 && h.end-f.Start > bound:
				r.violate("d", "%s of %s: nobody took %q over in %v", f.Kind, f.Target, key, time.Duration(h.end-f.Start))
			case next >= 0:
				d := time.Duration(next - f.Start)
				r.Takeovers = append(r.Takeovers, d)
				if next-f.Start > bound {
					if st := h.anyStall(f.Target, f.Start, next); st >= time.Duration(next-f.Start-bound) {
						r.Starved = append(r.Starved, fmt.Sprintf("takeover of %q after %v while a client stalled %v", key, d, st))
						continue
					}
					r.violate("d", "%s of %s: %q taken over after %v > TTL + %v", f.Kind, f.Target, key, d, lim.TakeoverSlack)
				}
			}
		}
	}
}

// checkErrors is (e): a holder whose lease ended before it released must be
// told, through Done or Release; Done closes only with a known cause.
// Superseded means: a newer holder that could not hold the lock beside it
// (kinds: family.go) had it first; for a semaphore, see
// checkPermitsTold.
func (h *History) checkErrors(r *Result, byKey map[string][]*holder, kinds map[string]kindSpec) {
	for key, hs := range byKey {
		ks := kinds[key]
		for _, hd := range hs {
			if hd.killed != 0 {
				continue
			}
			if hd.rel == nil || hd.done == nil {
				r.violate("e", "%s: loop ended without Release/Done (rel %v, done %v)", hd, hd.rel != nil, hd.done != nil)
				continue
			}
			switch hd.done.Class {
			case workload.ClassLost, workload.ClassReleased, workload.ClassClosed:
			default:
				r.violate("e", "%s: Done closed with unexpected error %q", hd, hd.done.Err)
			}
			lostDone := hd.done.Class == workload.ClassLost
			lostRel := hd.rel.Class == workload.ClassLost
			if lostDone && hd.rel.Err == "" {
				r.violate("e", "%s: Release returned nil after Done reported %q", hd, hd.done.Err)
			}
			if hd.rel.Err != "" && !lostRel {
				r.ReleaseErrors++
			}
			// Superseded: a newer holder had the key before this one began
			// to release, so this lease ended early and the holder must know.
			if ks.Kind == workload.KindSemaphore {
				continue // checkPermitsTold
			}
			for _, g := range hs {
				if g.token > hd.token && g.start < hd.rel.Call && !lostDone && !lostRel && ks.conflict(hd, g) {
					r.violate("e", "%s: %s held the key from %v before its Release, yet it was never told (Release: %q)",
						hd, g, time.Duration(hd.rel.Call-g.start), hd.rel.Err)
					break
				}
			}
		}
	}
}

// Summary is the one-line digest of the violations.
func (r *Result) Summary() string {
	if len(r.Violations) == 0 {
		return "none"
	}
	var parts []string
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		if n := len(r.Violations[c]); n > 0 {
			parts = append(parts, fmt.Sprintf("(%s)×%d", c, n))
		}
	}
	return strings.Join(parts, " ")
}
