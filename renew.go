package renewlock

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/keyslot"
)

const (
	// renewChunk bounds the keys renewed by one script call, so that no call
	// holds Redis for long (well under a millisecond) while other clients
	// wait.
	renewChunk = 64
	// maxInflightBatches bounds concurrent renewal round trips per client.
	// Normally there is at most one; more appear only when Redis is slow.
	maxInflightBatches = 4
)

// renewLoop is the state of the engine's single background loop, which
// keeps every lease of the Client alive: held locks and waiters' queue
// entries alike. It wakes at the earliest due renewal or validity deadline,
// renews everything due (or nearly due) in one pipelined round trip, and
// declares a lock lost when a renewal finds another owner or when its
// deadline passes without a successful renewal. It never blocks on the
// network: round trips run in batch goroutines that report back.
type renewLoop struct {
	kick chan struct{} // re-plan now (buffered 1)
	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup // batch goroutines

	inflight int // batches on the wire; guarded by engine.mu
	// scriptLoaded says the renew script is known to be in Redis's cache, so
	// batches are sent by SHA; until then (and after NOSCRIPT) by source.
	scriptLoaded atomic.Bool
	wake         time.Time   // when timer fires next; guarded by engine.mu
	timer        *time.Timer // wakes the loop at wake
}

func (l *renewLoop) init() {
	l.kick = make(chan struct{}, 1)
	l.stop = make(chan struct{})
	l.done = make(chan struct{})
	l.timer = time.NewTimer(time.Hour)
	l.wake = time.Now().Add(time.Hour)
}

// alarm makes the loop run at t at the latest. e.mu is held. Taking on a
// lease neither scans the others nor wakes the loop goroutine.
func (e *engine) alarm(t time.Time) {
	if t.Before(e.loop.wake) {
		e.loop.wake = t
		e.loop.timer.Reset(time.Until(t))
	}
}

func (e *engine) poke() {
	select {
	case e.loop.kick <- struct{}{}:
	default:
	}
}

// stopLoop stops the loop and waits for it and every batch.
func (e *engine) stopLoop() {
	close(e.loop.stop)
	<-e.loop.done
	e.loop.wg.Wait()
}

func (e *engine) run() {
	defer close(e.loop.done)
	defer e.loop.timer.Stop()
	for {
		e.plan(time.Now())
		select {
		case <-e.loop.timer.C:
		case <-e.loop.kick:
		case <-e.loop.stop:
			return
		}
	}
}

// plan declares overdue locks lost, starts a batch for the leases due, and
// sets the alarm for when it must run again.
func (e *engine) plan(now time.Time) {
	next := now.Add(time.Hour)
	var expired, due []*lease
	e.mu.Lock()
	for le := range e.leases {
		if le.state == leaseHeld || le.state == leaseReleasing {
			if !now.Before(le.deadline) {
				delete(e.leases, le)
				le.state = leaseGone
				expired = append(expired, le)
				continue
			}
			if le.deadline.Before(next) {
				next = le.deadline
			}
		}
		switch {
		case le.inflight, le.state == leaseReleasing:
		case now.Before(le.retryAt):
			if le.retryAt.Before(next) {
				next = le.retryAt
			}
		// Take every lease due within half an interval: renewing early
		// costs nothing, and it pulls all leases of the client into step,
		// so that they share one round trip per interval.
		case !le.nextRenew.After(now.Add(le.cfg.interval() / 2)):
			due = append(due, le)
		case le.nextRenew.Before(next):
			next = le.nextRenew
		}
	}
	if len(due) > 0 {
		if e.loop.inflight < maxInflightBatches {
			// Waiting past the earliest deadline is pointless: that lock
			// is lost then.
			deadline := now.Add(time.Hour)
			as := make([]leaseState, len(due))
			for i, le := range due {
				le.inflight = true
				as[i] = le.state
				if le.state == leaseHeld && le.deadline.Before(deadline) {
					deadline = le.deadline
				}
			}
			e.loop.inflight++
			e.loop.wg.Add(1)
			go e.batch(due, as, deadline)
		}
		// else: a finishing batch pokes the loop.
	}
	e.loop.wake = next
	e.loop.timer.Reset(time.Until(next))
	e.mu.Unlock()
	for _, le := range expired {
		le.lock.lose("validity deadline passed without a successful renewal", false)
	}
}

// batch renews leases in one pipelined round trip and records the outcome.
// as[i] is what leases[i] was when the batch was planned.
//
// Interleavings it allows for: a Release runs while the renewal is on the
// wire (the lease is then releasing, and "not ours" may be the release's
// own doing: ignored, the release's reply decides); a waiter gives up (the
// lease is gone: its result is ignored, its clean-up releases whatever
// Redis granted it); a waiter is granted the lock (by pub/sub or a
// release's reply) while the renewal of its place is on the wire (the
// lease is held by then: a "queued" reply is older than the grant and is
// ignored, a "held" one renews the lock).
func (e *engine) batch(leases []*lease, as []leaseState, deadline time.Time) {
	defer e.loop.wg.Done()
	defer e.poke()
	ctx, cancel := context.WithDeadline(e.c.ctx, deadline)
	sent := time.Now()
	res := renewMany(ctx, e.c.rdb, &e.loop.scriptLoaded, leases)
	cancel()

	now := time.Now()
	var lost, rejected, failed []*lease
	var rejErr, failErr []error
	e.mu.Lock()
	e.loop.inflight--
	for i, le := range leases {
		le.inflight = false
		if _, ok := e.leases[le]; !ok {
			continue // released, given up or lost meanwhile
		}
		r := res[i]
		if r.err == nil && r.code == renewHeld && !r.replicated(le) {
			// Redis renewed it, but not enough replicas acknowledged: it
			// does not count; retry, and let the deadline decide.
			r.err = fmt.Errorf("%w: %d of %d replicas within %v", ErrNotReplicated, r.acked, le.cfg.replicas, le.cfg.replicaTimeout)
		}
		if r.err != nil {
			if err := classify(r.err, le.rkey); isRejected(err) {
				switch le.state {
				case leaseHeld:
					// Retrying cannot fix it (an ACL change, say): the
					// lease will run out, so the holder hears it now.
					delete(e.leases, le)
					le.state = leaseGone
					rejected = append(rejected, le)
					rejErr = append(rejErr, err)
				case leaseWaiting:
					delete(e.leases, le)
					delete(e.byID, le.id)
					le.state = leaseGone
					signalEvent(le.events, waitEvent{kind: waitFailed, err: err})
				}
				continue
			}
			// Transient: retry soon, until the deadline decides.
			le.retryAt = now.Add(le.cfg.interval() / 4)
			failed = append(failed, le)
			failErr = append(failErr, r.err)
			continue
		}
		switch le.state {
		case leaseHeld, leaseReleasing:
			switch {
			case r.code == renewHeld:
				// Also when it was sent for the waiter: it was processed
				// after the grant, and renewed the lock from sent on.
				le.deadline = sent.Add(le.cfg.validity())
				le.nextRenew = sent.Add(le.cfg.interval())
				le.retryAt = time.Time{}
			case le.state == leaseReleasing:
				// "Not ours" may be the release's own doing: its reply
				// decides. Only the deadline is still watched.
			case as[i] == leaseWaiting:
				// The reply is about the waiter's place, from before the
				// grant: nothing to learn from it.
			default:
				delete(e.leases, le)
				le.state = leaseGone
				lost = append(lost, le)
			}
		case leaseWaiting:
			switch r.code {
			case renewHeld: // granted, and the grant's message not yet seen (or to confirm)
				le.base = sent
				e.grantLocked(le, r.value, true)
			case renewWaiting, renewFirst:
				le.base = sent
				e.scheduleWait(le, sent, now, time.Duration(r.value)*time.Millisecond, r.code == renewFirst)
			default:
				e.goneLocked(le)
			}
		}
	}
	e.mu.Unlock()
	if o := e.c.cfg.observer; o != nil && o.Renewed != nil {
		ev := RenewEvent{Leases: len(leases), Failed: len(failed), Lost: len(lost) + len(rejected), RTT: now.Sub(sent)}
		if len(failErr) > 0 {
			ev.Err = failErr[0]
		} else if len(rejErr) > 0 {
			ev.Err = rejErr[0]
		}
		o.Renewed(ev)
	}
	logRenewalFailures(failed, failErr)
	for _, le := range lost {
		le.lock.lose("renewal found another owner or no key", true)
	}
	for i, le := range rejected {
		le.lock.loseErr(fmt.Errorf("renewal %w", rejErr[i]))
	}
}

// logRenewalFailures logs transient renewal failures, once per logger in
// use (leases may have loggers of their own, WithLogger per call): the
// number of leases, the first key and the first error.
func logRenewalFailures(leases []*lease, errs []error) {
	if len(leases) == 0 {
		return
	}
	type entry struct {
		n   int
		key string
		err error
	}
	var order []*slog.Logger
	by := make(map[*slog.Logger]*entry)
	for i, le := range leases {
		e := by[le.cfg.logger]
		if e == nil {
			e = &entry{key: le.lock.key, err: errs[i]}
			by[le.cfg.logger] = e
			order = append(order, le.cfg.logger)
		}
		e.n++
	}
	for _, lg := range order {
		e := by[lg]
		lg.Warn("renewlock: renewal failed, retrying until the validity deadline",
			"leases", e.n, "key", e.key, "err", e.err)
	}
}

// Codes of the renew script's reply, per key.
const (
	renewGone    = 0 // neither holder nor queued
	renewHeld    = 1 // holds the lock; value is its token
	renewWaiting = 2 // queued; value is the ms left of the holder's lease
	renewFirst   = 3 // queued, first in line; value as renewWaiting
)

type renewResult struct {
	code  int64
	value uint64
	err   error
	// With WithReplicaAck: how many replicas acknowledged the round trip's
	// writes (ackChecked: WAIT was sent).
	acked      int64
	ackChecked bool
}

// replicated reports whether r meets le's WithReplicaAck.
func (r renewResult) replicated(le *lease) bool {
	return le.cfg.replicas == 0 || (r.ackChecked && r.acked >= int64(le.cfg.replicas))
}

// renewMany renews leases with as few round trips as possible: one pipeline
// of script calls of at most renewChunk keys each, grouped by hash slot on a
// cluster. The script goes by SHA once loaded is set, else by source (which
// loads it); a second round trip happens only after an unexpected NOSCRIPT.
func renewMany(ctx context.Context, rdb redis.UniversalClient, loaded *atomic.Bool, leases []*lease) []renewResult {
	var ack ackWanted
	for _, le := range leases {
		ack.add(le.cfg)
	}
	if ack.n > 0 {
		return renewAcked(ctx, rdb, loaded, leases, ack)
	}
	groups := group(rdb, leases)
	out := make([]renewResult, len(leases))
	pending := groups
	bySHA := loaded.Load()
	for attempt := 0; attempt < 2 && len(pending) > 0; attempt++ {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(pending))
		for i, g := range pending {
			keys, args := renewArgs(leases, g)
			if bySHA {
				cmds[i] = renewScript.EvalSha(ctx, pipe, keys, args...)
			} else {
				cmds[i] = renewScript.Eval(ctx, pipe, keys, args...)
			}
		}
		_, _ = pipe.Exec(ctx) // errors are per command below
		var retry [][]int
		for i, g := range pending {
			vals, err := cmds[i].Int64Slice()
			if err == nil && len(vals) != 2*len(g) {
				err = fmt.Errorf("renewlock: renew script returned %d values for %d keys", len(vals), len(g))
			}
			if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				loaded.Store(false) // flushed, or Redis restarted
				if attempt == 0 {
					retry = append(retry, g)
					continue
				}
			}
			reloadOnTopologyError(ctx, rdb, err)
			if err == nil && !bySHA {
				loaded.Store(true)
			}
			for j, idx := range g {
				if err != nil {
					out[idx].err = err
				} else {
					out[idx].code, out[idx].value = vals[2*j], uint64(max(vals[2*j+1], 0))
				}
			}
		}
		pending, bySHA = retry, false
	}
	return out
}

// group splits lease indexes into script calls: by hash slot on a cluster
// (a script may not touch keys of several slots), then by renewChunk.
func group(rdb redis.UniversalClient, leases []*lease) [][]int {
	var bySlot map[int][]int
	if _, cluster := rdb.(*redis.ClusterClient); cluster {
		bySlot = make(map[int][]int)
		for i, le := range leases {
			s := keyslot.Slot(le.rkey)
			bySlot[s] = append(bySlot[s], i)
		}
	} else {
		all := make([]int, len(leases))
		for i := range all {
			all[i] = i
		}
		bySlot = map[int][]int{0: all}
	}
	var out [][]int
	for _, idx := range bySlot {
		for len(idx) > renewChunk {
			out = append(out, idx[:renewChunk])
			idx = idx[renewChunk:]
		}
		out = append(out, idx)
	}
	return out
}
