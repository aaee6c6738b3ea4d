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
	// holds Redis for long (a few hundred µs) while other clients wait.
	renewChunk = 128
	// maxInflightBatches bounds concurrent renewal round trips per client.
	// Normally there is at most one; more appear only when Redis is slow.
	maxInflightBatches = 4
)

// renewer is the single background loop of a Client that keeps every held
// lock alive. It wakes at the earliest due renewal or validity deadline,
// renews everything due (or nearly due) in one pipelined round trip, and
// declares a lock lost when a renewal finds another owner or when its
// deadline passes without a successful renewal. It never blocks on the
// network: round trips run in batch goroutines that report back.
type renewer struct {
	c    *Client
	kick chan struct{} // re-plan now (buffered 1)
	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup // batch goroutines

	mu       sync.Mutex
	locks    map[*Lock]struct{}
	inflight int  // batches on the wire
	closed   bool // drained by Close: add refuses

	// scriptLoaded says the renew script is known to be in Redis's cache, so
	// batches are sent by SHA; until then (and after NOSCRIPT) by source.
	scriptLoaded atomic.Bool
	wake         time.Time   // when timer fires next
	timer        *time.Timer // wakes the loop at wake
}

func newRenewer(c *Client) *renewer {
	r := &renewer{
		c:     c,
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		locks: make(map[*Lock]struct{}),
		timer: time.NewTimer(time.Hour),
		wake:  time.Now().Add(time.Hour),
	}
	go r.run()
	return r
}

// add starts renewing l, whose acquisition was sent at sent. It returns
// false if the Client is closing.
func (r *renewer) add(l *Lock, sent time.Time) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	l.deadline = sent.Add(l.cfg.validity())
	l.nextRenew = sent.Add(l.cfg.interval())
	r.locks[l] = struct{}{}
	// Move the loop's alarm if this lock needs it sooner. Adding a lock
	// neither scans the held locks nor wakes the loop goroutine.
	if l.nextRenew.Before(r.wake) {
		r.setAlarm(l.nextRenew)
	}
	r.mu.Unlock()
	return true
}

// releasing stops renewing l but keeps watching its validity deadline, until
// remove. A renewal already on the wire may still land; it is owner-checked,
// so it cannot revive a released lock.
func (r *renewer) releasing(l *Lock) {
	r.mu.Lock()
	l.releasing = true
	r.mu.Unlock()
}

// remove forgets l.
func (r *renewer) remove(l *Lock) {
	r.mu.Lock()
	delete(r.locks, l)
	r.mu.Unlock()
}

// drain forgets every lock, makes add refuse new ones, and returns the
// locks that were held and those whose Release was under way.
func (r *renewer) drain() (held, releasing []*Lock) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for l := range r.locks {
		if l.releasing {
			releasing = append(releasing, l)
		} else {
			held = append(held, l)
		}
		delete(r.locks, l)
	}
	return held, releasing
}

func (r *renewer) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// close stops the loop and waits for it and every batch.
func (r *renewer) close() {
	close(r.stop)
	<-r.done
	r.wg.Wait()
}

// setAlarm makes the loop run at t. r.mu is held.
func (r *renewer) setAlarm(t time.Time) {
	r.wake = t
	r.timer.Reset(time.Until(t))
}

func (r *renewer) run() {
	defer close(r.done)
	defer r.timer.Stop()
	for {
		r.plan(time.Now())
		select {
		case <-r.timer.C:
		case <-r.kick:
		case <-r.stop:
			return
		}
	}
}

// plan declares overdue locks lost, starts a batch for those due, and sets
// the alarm for when it must run again.
func (r *renewer) plan(now time.Time) {
	next := now.Add(time.Hour)
	var expired, due []*Lock
	r.mu.Lock()
	for l := range r.locks {
		if !now.Before(l.deadline) {
			delete(r.locks, l)
			expired = append(expired, l)
			continue
		}
		if l.deadline.Before(next) {
			next = l.deadline
		}
		switch {
		case l.inflight, l.releasing:
		case now.Before(l.retryAt):
			if l.retryAt.Before(next) {
				next = l.retryAt
			}
		// Take every lock due within half an interval: renewing early costs
		// nothing, and it pulls all locks of the client into step, so that
		// they share one round trip per interval.
		case !l.nextRenew.After(now.Add(l.cfg.interval() / 2)):
			due = append(due, l)
		case l.nextRenew.Before(next):
			next = l.nextRenew
		}
	}
	if len(due) > 0 {
		if r.inflight < maxInflightBatches {
			for _, l := range due {
				l.inflight = true
			}
			r.inflight++
			r.wg.Add(1)
			go r.batch(due)
		}
		// else: a finishing batch pokes the loop.
	}
	r.setAlarm(next)
	r.mu.Unlock()
	for _, l := range expired {
		l.lose("validity deadline passed without a successful renewal", false)
	}
}

// batch renews locks in one pipelined round trip and records the outcome.
func (r *renewer) batch(locks []*Lock) {
	defer r.wg.Done()
	defer r.poke()
	// Waiting past the earliest deadline is pointless: that lock is lost then.
	deadline := locks[0].deadline
	for _, l := range locks[1:] {
		if l.deadline.Before(deadline) {
			deadline = l.deadline
		}
	}
	ctx, cancel := context.WithDeadline(r.c.ctx, deadline)
	sent := time.Now()
	res := renewMany(ctx, r.c.rdb, &r.scriptLoaded, locks)
	cancel()

	now := time.Now()
	var lost, rejected, failed []*Lock
	var rejErr, failErr []error
	r.mu.Lock()
	r.inflight--
	for i, l := range locks {
		l.inflight = false
		if _, ok := r.locks[l]; !ok {
			continue // released or already lost meanwhile
		}
		if l.releasing && (res[i].err != nil || !res[i].renewed) {
			// Release is under way: "not ours" may be its own doing (it
			// ran in Redis before this renewal), and the release's reply
			// says which. Only the deadline is still watched.
			continue
		}
		switch res[i].err {
		case nil:
			if res[i].renewed {
				l.deadline = sent.Add(l.cfg.validity())
				l.nextRenew = sent.Add(l.cfg.interval())
				l.retryAt = time.Time{}
			} else {
				delete(r.locks, l)
				lost = append(lost, l)
			}
		default:
			if err := classify(res[i].err, l.rkey); isRejected(err) {
				// Retrying cannot fix it (an ACL change, say): the lease
				// will run out, so the holder hears it now.
				delete(r.locks, l)
				rejected = append(rejected, l)
				rejErr = append(rejErr, err)
				continue
			}
			// Transient: retry soon, until the deadline decides.
			l.retryAt = now.Add(l.cfg.interval() / 4)
			failed = append(failed, l)
			failErr = append(failErr, res[i].err)
		}
	}
	r.mu.Unlock()
	logRenewalFailures(failed, failErr)
	for _, l := range lost {
		l.lose("renewal found another owner or no key", true)
	}
	for i, l := range rejected {
		l.loseErr(fmt.Errorf("renewal %w", rejErr[i]))
	}
}

// logRenewalFailures logs transient renewal failures, once per logger in
// use (locks may have loggers of their own, WithLogger per call): the
// number of locks, the first key and the first error.
func logRenewalFailures(locks []*Lock, errs []error) {
	if len(locks) == 0 {
		return
	}
	type entry struct {
		n   int
		key string
		err error
	}
	var order []*slog.Logger
	by := make(map[*slog.Logger]*entry)
	for i, l := range locks {
		e := by[l.cfg.logger]
		if e == nil {
			e = &entry{key: l.key, err: errs[i]}
			by[l.cfg.logger] = e
			order = append(order, l.cfg.logger)
		}
		e.n++
	}
	for _, lg := range order {
		e := by[lg]
		lg.Warn("renewlock: renewal failed, retrying until the validity deadline",
			"locks", e.n, "key", e.key, "err", e.err)
	}
}

type renewResult struct {
	renewed bool
	err     error
}

// renewMany renews locks with as few round trips as possible: one pipeline of
// script calls of at most renewChunk keys each, grouped by hash slot on a
// cluster. The script goes by SHA once loaded is set, else by source (which
// loads it); a second round trip happens only after an unexpected NOSCRIPT.
func renewMany(ctx context.Context, rdb redis.UniversalClient, loaded *atomic.Bool, locks []*Lock) []renewResult {
	groups := group(rdb, locks)
	out := make([]renewResult, len(locks))
	pending := groups
	bySHA := loaded.Load()
	for attempt := 0; attempt < 2 && len(pending) > 0; attempt++ {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(pending))
		for i, g := range pending {
			keys := make([]string, len(g))
			args := make([]any, 0, 2*len(g))
			for j, idx := range g {
				l := locks[idx]
				keys[j] = l.rkey
				args = append(args, l.owner, l.cfg.ttl.Milliseconds())
			}
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
			if err == nil && len(vals) != len(g) {
				err = fmt.Errorf("renewlock: renew script returned %d results for %d keys", len(vals), len(g))
			}
			if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				loaded.Store(false) // flushed, or Redis restarted
				if attempt == 0 {
					retry = append(retry, g)
					continue
				}
			}
			if err == nil && !bySHA {
				loaded.Store(true)
			}
			for j, idx := range g {
				if err != nil {
					out[idx].err = err
				} else {
					out[idx].renewed = vals[j] == 1
				}
			}
		}
		pending, bySHA = retry, false
	}
	return out
}

// group splits lock indexes into script calls: by hash slot on a cluster
// (a script may not touch keys of several slots), then by renewChunk.
func group(rdb redis.UniversalClient, locks []*Lock) [][]int {
	var bySlot map[int][]int
	if _, cluster := rdb.(*redis.ClusterClient); cluster {
		bySlot = make(map[int][]int)
		for i, l := range locks {
			s := keyslot.Slot(l.rkey)
			bySlot[s] = append(bySlot[s], i)
		}
	} else {
		all := make([]int, len(locks))
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
