package chaos

// The lock family under faults (issue 10): semaphores, read-write locks and
// elections run through the same history and the same checks (a)–(e) as the
// mutex, each check generalized to what the kind promises:
//
//	(a) exclusion, on validity intervals (acquire returned → told of loss,
//	    began releasing, or killed), exactly as for the mutex:
//	      semaphore of limit L: at most L valid permits at any instant;
//	      read-write lock: no valid reader while a writer is valid, at most
//	      one valid writer;
//	      election: at most one valid leader.
//	    Overlaps the documented limits allow (Redis restarted empty, a
//	    frozen holder) are measured and reported, not failed.
//	(b) fencing, by what the token can protect for each kind:
//	      election: the leader writes its term to a fenced register (a write
//	      is accepted iff its term is ≥ every accepted one), as the mutex;
//	      read-write lock: writes fenced by the writer's token against every
//	      token the resource has seen (reads included); reads carry the
//	      reader's token and are refused if a write with a larger token came
//	      first; checked: no write with a smaller token is accepted after a
//	      read with a larger one, and no read is served after a newer write;
//	      semaphore: permits are concurrent, so no one register can order
//	      them; each permit holder writes to a resource of its own, fenced by
//	      its token, and tokens must rise strictly across acquisitions (in
//	      real-time order, which porcupine checks for every kind).
//	(c) a lost lease is signalled before Redis could end it: for a shared
//	    kind the end of a holder's lease is its own hash field x<id>
//	    (server ms), which the observer reads with TIME in one MULTI.
//	(d) after a holder is killed, frozen or cut off, its share stops
//	    keeping others out within about one TTL.
//	(e) no swallowed error: a holder whose share Redis gave to another
//	    (a conflicting newer holder, or more than L permits) is told.

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// kindSpec is the kind of lock a key is.
type kindSpec struct {
	Kind  string // workload.KindMutex, KindSemaphore, KindRW, KindElection
	Limit int    // a semaphore's limit
}

// shared reports whether holders of the kind have leases of their own
// (hash fields) rather than the key's TTL.
func (k kindSpec) shared() bool {
	return k.Kind == workload.KindSemaphore || k.Kind == workload.KindRW
}

func (k kindSpec) String() string {
	switch k.Kind {
	case workload.KindSemaphore:
		return fmt.Sprintf("semaphore (limit %d)", k.Limit)
	case workload.KindRW:
		return "read-write lock"
	case workload.KindElection:
		return "election"
	}
	return "mutex"
}

// conflict reports whether holders a and b may not both be valid at once
// (for a semaphore it depends on how many others are: see the sweep).
func (k kindSpec) conflict(a, b *holder) bool {
	switch k.Kind {
	case workload.KindRW:
		return a.mode == "w" || b.mode == "w"
	case workload.KindSemaphore:
		return false
	}
	return true
}

// resourceOf is the fenced resource a write went to.
func resourceOf(e workload.Event) string {
	if e.Res != "" {
		return e.Res
	}
	return e.Key
}

// checkFamily runs (a)–(e) on keys of every kind ((c) already ran).
func (h *History) checkFamily(r *Result, lim Limits, order []*holder, byKey map[string][]*holder, worder []*writeOp) {
	sub := func(keep func(kindSpec) bool) map[string][]*holder {
		out := make(map[string][]*holder)
		for k, hs := range byKey {
			if keep(lim.Kinds[k]) {
				out[k] = hs
			}
		}
		return out
	}
	exclusive := sub(func(k kindSpec) bool { return !k.shared() })
	shared := sub(kindSpec.shared)
	notRW := sub(func(k kindSpec) bool { return k.Kind != workload.KindRW })
	rw := sub(func(k kindSpec) bool { return k.Kind == workload.KindRW })

	// (a)
	h.checkOverlap(r, lim, exclusive)
	h.checkSharedOverlap(r, lim, shared)

	// (b): mutexes, elections and permits' own resources as registers;
	// read-write locks with their own model.
	var regWrites, rwOps []*writeOp
	for _, w := range worder {
		if lim.Kinds[w.start.Key].Kind == workload.KindRW {
			rwOps = append(rwOps, w)
		} else {
			regWrites = append(regWrites, w)
		}
	}
	regLogs, rwLogs := map[string][]workload.LogEntry{}, map[string][]workload.LogEntry{}
	for _, w := range worder {
		res := resourceOf(w.start)
		if entries, ok := h.log[res]; ok {
			if lim.Kinds[w.start.Key].Kind == workload.KindRW {
				rwLogs[res] = entries
			} else {
				regLogs[res] = entries
			}
		}
	}
	h.checkFencing(r, lim, notRW, regWrites, regLogs)
	h.checkRWFencing(r, lim, rw, rwOps, rwLogs)
	h.countStaleAccepted(r, lim, order, worder)

	// (d)
	h.checkTakeover(r, lim, exclusive)
	h.checkSharedTakeover(r, lim, shared)

	// (e)
	h.checkErrors(r, byKey, lim.Kinds)
	h.checkPermitsTold(r, lim, byKey)
}

// checkSharedOverlap is (a) for semaphores and read-write locks.
func (h *History) checkSharedOverlap(r *Result, lim Limits, byKey map[string][]*holder) {
	for key, hs := range byKey {
		ks := lim.Kinds[key]
		hs = slices.Clone(hs)
		sort.Slice(hs, func(i, j int) bool { return hs[i].start < hs[j].start })
		if ks.Kind == workload.KindRW {
			for i, a := range hs {
				for _, b := range hs[i+1:] {
					if b.start >= a.end || !ks.conflict(a, b) {
						continue
					}
					h.overlap(r, lim, key, time.Duration(min(a.end, b.end)-b.start), a, b)
				}
			}
			continue
		}
		// A semaphore: sweep the intervals; an episode is a stretch of time
		// with more than Limit valid permits.
		type edge struct {
			t     int64
			start bool
			hd    *holder
		}
		var edges []edge
		for _, hd := range hs {
			if hd.end > hd.start {
				edges = append(edges, edge{hd.start, true, hd}, edge{hd.end, false, hd})
			}
		}
		sort.Slice(edges, func(i, j int) bool {
			if edges[i].t != edges[j].t {
				return edges[i].t < edges[j].t
			}
			return !edges[i].start && edges[j].start // ends first: [start, end)
		})
		active := map[*holder]bool{}
		var members []*holder
		var from int64
		for _, e := range edges {
			if e.start {
				active[e.hd] = true
				if len(active) == ks.Limit+1 {
					from, members = e.t, nil
					for a := range active {
						members = append(members, a)
					}
				} else if len(active) > ks.Limit+1 {
					members = append(members, e.hd)
				}
				continue
			}
			delete(active, e.hd)
			if len(active) == ks.Limit {
				h.overlap(r, lim, key, time.Duration(e.t-from), members...)
			}
		}
	}
}

// overlap records one overlap of (a) among holders.
func (h *History) overlap(r *Result, lim Limits, key string, d time.Duration, hs ...*holder) {
	r.Overlaps++
	r.MaxOverlap = max(r.MaxOverlap, d)
	for _, hd := range hs {
		if hd.starved {
			r.StarvedOverlaps++
			return
		}
	}
	if !lim.OverlapAllowed {
		r.violate("a", "%s %q: %v all valid for %v", lim.Kinds[key], key, hs, d)
	}
}

// The read-write lock's fencing model: the largest token issued, the
// largest accepted write's, and the largest the resource has seen.
type rwState struct{ issued, write, all uint64 }

type rwInput struct {
	op    byte // 'a' acquisition, 'w' write, 'r' read
	token uint64
	key   string
	wid   string
}

var rwFencingModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := make(map[string][]porcupine.Operation)
		var keys []string
		for _, op := range history {
			k := op.Input.(rwInput).key
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
	Init: func() any { return rwState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(rwState), input.(rwInput)
		switch in.op {
		case 'a':
			if in.token <= s.issued {
				return false, s
			}
			s.issued = in.token
			return true, s
		case 'w':
			if !output.(bool) {
				return in.token < s.all, s
			}
			if in.token < s.all {
				return false, s
			}
			s.write, s.all = in.token, in.token
			return true, s
		default: // a read
			if !output.(bool) {
				return in.token < s.write, s
			}
			if in.token < s.write {
				return false, s
			}
			s.all = max(s.all, in.token)
			return true, s
		}
	},
	Equal: func(a, b any) bool { return a.(rwState) == b.(rwState) },
	DescribeOperation: func(input, output any) string {
		in := input.(rwInput)
		if in.op == 'a' {
			return fmt.Sprintf("acquire → %d", in.token)
		}
		return fmt.Sprintf("%c %s(%d) → %v", in.op, in.wid, in.token, output)
	},
}

// checkRWFencing is (b) for read-write locks.
func (h *History) checkRWFencing(r *Result, lim Limits, byKey map[string][]*holder, ops []*writeOp, logs map[string][]workload.LogEntry) {
	var hist []porcupine.Operation
	for _, hs := range byKey {
		for _, hd := range hs {
			hist = append(hist, porcupine.Operation{
				Input: rwInput{op: 'a', token: hd.token, key: hd.key},
				Call:  hd.acq.Call, Return: hd.acq.Ret,
			})
		}
	}
	for _, w := range ops {
		if w.ret == 0 {
			continue
		}
		op := byte('w')
		if w.start.Op == "r" {
			op = 'r'
		}
		hist = append(hist, porcupine.Operation{
			Input:  rwInput{op: op, token: w.start.Token, key: w.start.Key, wid: w.start.WID},
			Output: w.accepted,
			Call:   w.start.Call, Return: w.ret,
		})
	}
	if len(hist) > 0 {
		switch res := porcupine.CheckOperationsTimeout(rwFencingModel, hist, lim.CheckTimeout); res {
		case porcupine.Ok:
		case porcupine.Unknown:
			r.violate("b", "porcupine did not finish within %v on %d read-write operations", lim.CheckTimeout, len(hist))
		default:
			r.violate("b", "history of %d acquisitions, reads and writes is not linearizable for a fenced read-write resource with increasing tokens", len(hist))
		}
	}
	// The resource's own serial order.
	for key, entries := range logs {
		var write, all uint64
		for _, en := range entries {
			bound := all
			if en.Op == "r" {
				bound = write
			}
			switch {
			case en.Accepted && en.Token < bound:
				r.violate("b", "%q: resource accepted %s with token %d after %d", key, en.Op, en.Token, bound)
			case !en.Accepted && en.Token >= bound:
				r.violate("b", "%q: resource refused %s with token %d though the bound was %d", key, en.Op, en.Token, bound)
			}
			if en.Accepted {
				if en.Op == "w" {
					write = max(write, en.Token)
				}
				all = max(all, en.Token)
			}
		}
	}
}

// countStaleAccepted counts accepted writes sent after their holder's lease
// could have ended in Redis: the writes a resource could not refuse, since
// no newer token had reached it (a semaphore permit's own resource).
func (h *History) countStaleAccepted(r *Result, lim Limits, order []*holder, worder []*writeOp) {
	type hid struct {
		worker string
		token  uint64
	}
	by := make(map[hid]*holder, len(order))
	for _, hd := range order {
		by[hid{hd.worker, hd.token}] = hd
	}
	expiry := h.observedExpiry()
	for _, w := range worder {
		hd := by[hid{w.start.Worker, w.start.Token}]
		if hd == nil || !w.accepted || w.start.Op == "r" || hd.done == nil || hd.done.Class != workload.ClassLost {
			continue
		}
		if e, _, _, _ := h.expiryBound(hd, int64(lim.TTL), expiry); w.start.Call > e {
			r.StaleAccepted++
		}
	}
}

// checkSharedTakeover is (d) for semaphores and read-write locks: after a
// holder's process is killed or frozen, or its client cut off, its share
// must stop keeping others out within TTL + slack. Measured: from the fault
// to the first acquisition by another process that the victim's share
// stood in the way of (a semaphore: one that brings the others' valid
// permits to the limit; a read-write lock: any, if the victim wrote, else a
// writer, counted from when the last other holder it waited for ended, if
// that was after the fault). Failed: if at fault + TTL + slack another process had been
// waiting (a blocking acquire called before fault + TTL, still waiting
// then) while the others' holders left room for it.
func (h *History) checkSharedTakeover(r *Result, lim Limits, byKey map[string][]*holder) {
	bound := int64(lim.TTL + lim.TakeoverSlack)
	type span struct {
		worker    string
		call, ret int64
	}
	waits := make(map[string][]span)
	for _, e := range h.events {
		if (e.Kind == workload.KindAcquire || e.Kind == workload.KindAcquireErr) && e.Blk {
			waits[e.Key] = append(waits[e.Key], span{e.Worker, e.Call, e.Ret})
		}
	}
	for _, f := range h.faults {
		if f.Target == "" || (f.Kind != FaultProcKill && f.Kind != FaultProcStop && f.Kind != FaultPartition) {
			continue
		}
		for key, hs := range byKey {
			ks := lim.Kinds[key]
			victimWrote, held := false, false
			var others []*holder
			for _, hd := range hs {
				if workload.WorkerOf(hd.worker) != f.Target {
					others = append(others, hd)
					continue
				}
				if hd.start <= f.Start && hd.end >= f.Start {
					held = true
					victimWrote = victimWrote || hd.mode == "w"
				}
			}
			if !held {
				continue
			}
			validAt := func(t int64) int {
				n := 0
				for _, o := range others {
					if o.start <= t && t < o.end {
						n++
					}
				}
				return n
			}
			var next *holder
			for _, g := range others {
				if g.start <= f.Start || (next != nil && g.start >= next.start) {
					continue
				}
				switch {
				case ks.Kind == workload.KindSemaphore && validAt(g.start) < ks.Limit:
					continue
				case ks.Kind == workload.KindRW && !victimWrote && g.mode != "w":
					continue
				}
				next = g
			}
			if next != nil {
				d := next.start - f.Start
				// Reported: for a read-write lock, from the later of the fault
				// and the end of the last other holder the next one waited
				// for (a writer after a dead reader also waits for live
				// readers); the failure test below does not depend on it.
				from := f.Start
				if ks.Kind == workload.KindRW {
					for _, o := range others {
						if o != next && o.start < next.start && o.end > from && ks.conflict(o, next) {
							from = max(from, min(o.end, next.start))
						}
					}
				}
				r.Takeovers = append(r.Takeovers, time.Duration(next.start-from))
				if d <= bound {
					continue
				}
			} else if h.end-f.Start <= bound {
				continue
			}
			// Late, or never: was anyone kept out by the victim alone?
			at := f.Start + bound
			waiting := false
			for _, w := range waits[key] {
				if workload.WorkerOf(w.worker) != f.Target && w.call < f.Start+int64(lim.TTL) && w.ret > at {
					waiting = true
				}
			}
			room := validAt(at) == 0
			if ks.Kind == workload.KindSemaphore {
				room = validAt(at) < ks.Limit
			}
			if !waiting || !room {
				continue // nobody needed what the victim held
			}
			// A waiter of the victim's, still in the queue, may have been
			// granted the room after the fault; its lease ends with its
			// place, which it last renewed before the fault, so that is no
			// excuse for a late takeover: reported with the violation.
			if g := h.ghostShare(key, f.Target, f.Start, at, hs); g != "" {
				r.GhostGrants = append(r.GhostGrants, fmt.Sprintf("%s of %s: %s %q: %s", f.Kind, f.Target, ks, key, g))
			}
			if st := h.anyStall(f.Target, f.Start, at); st >= lim.TakeoverSlack {
				r.Starved = append(r.Starved, fmt.Sprintf("takeover of %q kept waiting past %v while a client stalled %v", key, time.Duration(bound), st))
				continue
			}
			r.violate("d", "%s of %s: %s %q: a waiter was still kept out %v after the fault, with room for it", f.Kind, f.Target, ks, key, time.Duration(bound))
		}
	}
}

// checkPermitsTold is (e) for semaphores: when a permit was granted while
// n older permits had been acquired and not yet begun releasing (nor been
// killed), and n + 1 > limit, Redis must have ended at least n + 1 − limit
// of them early: that many of their holders must have been told (Done with
// ErrLeaseLost, or Release returning it).
func (h *History) checkPermitsTold(r *Result, lim Limits, byKey map[string][]*holder) {
	for key, hs := range byKey {
		ks := lim.Kinds[key]
		if ks.Kind != workload.KindSemaphore {
			continue
		}
		for _, g := range hs {
			var older []*holder
			told := 0
			for _, hd := range hs {
				if hd == g || hd.killed != 0 || hd.rel == nil || hd.token >= g.token || hd.start >= g.start || g.start >= hd.rel.Call {
					continue
				}
				older = append(older, hd)
				if (hd.done != nil && hd.done.Class == workload.ClassLost) || hd.rel.Class == workload.ClassLost {
					told++
				}
			}
			if need := len(older) + 1 - ks.Limit; told < need {
				r.violate("e", "%s %q: %s was granted while %v held permits and had not begun releasing; %d of them must have lost theirs, %d were told",
					ks, key, g, older, need, told)
			}
		}
	}
}

// ghostShare looks for a share of key held in Redis, between from and to,
// by victim (its holder text) under a token none of hs ever reported: a
// grant made to one of the victim's queued waiters after the fault, which
// the victim never saw. It describes the first one found, or returns "".
func (h *History) ghostShare(key, victim string, from, to int64, hs []*holder) string {
	reported := make(map[uint64]bool, len(hs))
	for _, hd := range hs {
		reported[hd.token] = true
	}
	for _, s := range h.samples {
		if s.Key != key || s.Sent < from || s.Sent > to {
			continue
		}
		for _, sh := range s.Shares {
			if sh.Holder == victim && sh.Left > 0 && !reported[sh.Token] {
				return fmt.Sprintf("the victim's queued waiter was granted token %d after the fault (seen %v after it, %v of its lease left), which the victim never saw",
					sh.Token, time.Duration(s.Sent-from).Round(time.Millisecond), sh.Left.Round(time.Millisecond))
			}
		}
	}
	return ""
}
