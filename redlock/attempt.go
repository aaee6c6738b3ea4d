package redlock

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/bridge"
)

// One attempt, end to end:
//
//  1. Ask every master at once to take the key (renewlock's TryAcquire:
//     one script call, never queued). Each master that takes it issues a
//     token, max(its last token for the key + 1, its clock in µs), and
//     starts renewing its lease in that master's renewlock.Client.
//  2. As soon as a quorum has taken it, the attempt is won: the masters
//     still to answer are stragglers, which join the lock if they take the
//     key later (more masters, more tolerance) and release it otherwise.
//     As soon as a quorum is out of reach, or no quorum answered within the
//     decision timeout, the attempt is lost and whatever it took is
//     released.
//  3. Write back: the lock's token is the largest issued by the quorum;
//     raise.lua raises the stored token on every master where the lock is
//     held to it (owner-checked), and a quorum must acknowledge the very
//     same value before the lock is handed out. Any later quorum shares a
//     master with this one, which then issues a larger token.
//
// Validity: each master's lease is a renewlock lease, whose validity
// deadline is measured from the moment its attempt was sent, so the
// deadline of every part is at least start + TTL·(1 − drift) − margin — the
// Redlock validity bound. The lock is handed out only if a quorum of parts
// is still before its deadline, and is lost the moment fewer than a quorum
// are (lock.go).

var (
	//go:embed raise.lua
	raiseSrc    string
	raiseScript = redis.NewScript(raiseSrc)
)

// FloorKeyPrefix is put, after the key prefix, in front of the key of a
// lock's token floor on a master (raise.lua): PREFIX + "redlock-floor:" +
// KEY, a string that exists only while a token is ahead of that master's
// clock. No mutex or other lock may use a key that starts with it.
const FloorKeyPrefix = "redlock-floor:"

// A reply is one master's answer to an attempt.
type reply struct {
	m   *master
	l   *renewlock.Lock
	err error
}

// A round is one attempt in flight, shared with its stragglers.
type round struct {
	set     bridge.Settings
	replies chan reply // before the decision; buffered for every master

	mu      sync.Mutex
	decided bool
	won     *Lock // the lock stragglers join; nil if the attempt was lost
}

// deliver hands a master's answer to the attempt, or, once it is decided,
// lets the straggler join the lock or release what it took.
func (r *round) deliver(rp reply) {
	r.mu.Lock()
	if !r.decided {
		r.replies <- rp
		r.mu.Unlock()
		return
	}
	won := r.won
	r.mu.Unlock()
	if rp.l == nil {
		return
	}
	if won != nil {
		won.join(&part{m: rp.m, l: rp.l})
		return
	}
	releaseParts(context.Background(), []*part{{m: rp.m, l: rp.l}}, r.set)
}

// failure describes a lost attempt.
type failure struct {
	n, quorum int
	held      int             // masters where another holds the key
	heldOn    []*master       // those masters
	gateHeld  bool            // the gate master was one of them: the attempt yields
	gate      *renewlock.Lock // the gate, taken by this attempt and kept for the caller
	reachable int             // masters that took the key or said it is held
	errs      []error
	rejected  int // of errs, how many retrying cannot fix
	closed    bool
	writeBack bool // the quorum was won, but the token write-back was not acknowledged
}

// final reports that retrying cannot succeed: errors that retrying cannot
// fix leave no quorum.
func (f *failure) final() bool { return f.rejected > f.n-f.quorum }

func (f *failure) error(c *Client, key string) error {
	switch {
	case f.closed:
		return renewlock.ErrClientClosed
	case f.held > f.n-f.quorum:
		return fmt.Errorf("%w: key %q is held by others on %d of %d masters (quorum %d)", renewlock.ErrNotAcquired, key, f.held, f.n, f.quorum)
	case f.gateHeld:
		return fmt.Errorf("%w: key %q is held or waited for on its gate, %s (waiters are served in order there)",
			renewlock.ErrNotAcquired, key, c.gate(key).name)
	case f.writeBack:
		return fmt.Errorf("redlock: acquire %q: a quorum took it, but fewer than %d of %d masters acknowledged the token write-back: %w",
			key, f.quorum, f.n, errors.Join(f.errs...))
	}
	return fmt.Errorf("redlock: acquire %q: no quorum (%d of %d masters): %d held by others, %d failed: %w",
		key, f.quorum, f.n, f.held, len(f.errs), errors.Join(f.errs...))
}

// decideTimeout bounds how long an attempt waits for a quorum to answer,
// and the write-back for its acknowledgements: a tenth of the TTL, at
// least 50 ms, at most half the validity.
func decideTimeout(set bridge.Settings) time.Duration {
	return min(max(set.TTL/10, 50*time.Millisecond), set.Validity/2)
}

// attempt makes one attempt on every master. have are locks already held
// on some masters (the gate, handed over by its queue, and at times one
// more); they join the lock if the attempt is won and are left to the
// caller otherwise. keep says the caller waits (Acquire): a lost attempt
// then releases what it took before returning, except the gate, which it
// returns in failure.gate for the caller to keep.
//
// The gate rule: an attempt that the gate master answers "held or queued
// by another" is lost even if a quorum of the others took the key. Whoever
// holds the gate is either the holder of the lock (which holds a quorum
// anyway) or the waiter the gate's queue served next, trying the others;
// yielding to it is what makes waiting first come, first served instead of
// a race the releaser usually wins. Safety never rests on the gate: a
// quorum is required either way, and a gate master that fails or does not
// answer vetoes nothing.
func (c *Client) attempt(ctx context.Context, key string, opts []renewlock.Option, set bridge.Settings, have map[*master]*renewlock.Lock, keep bool) (*Lock, *failure) {
	n := len(c.masters)
	f := &failure{n: n, quorum: c.quorum}
	start := time.Now()
	actx, acancel := context.WithDeadline(c.ctx, start.Add(set.Validity))
	stopCaller := context.AfterFunc(ctx, acancel)
	r := &round{set: set, replies: make(chan reply, n)}
	gm := c.gate(key)
	gateDone := false // the gate is held by this attempt, or has answered
	var won []*part
	for _, m := range c.masters {
		if hl := have[m]; hl != nil {
			gateDone = gateDone || m == gm
			if hl.Err() == nil {
				won = append(won, &part{m: m, l: hl})
			} else {
				f.errs = append(f.errs, fmt.Errorf("%s: the lock handed over by its queue was lost: %w", m.name, hl.Err()))
			}
			continue
		}
		c.spawn(func() {
			l, err := m.rl.TryAcquire(actx, key, opts...)
			r.deliver(reply{m: m, l: l, err: err})
		})
	}
	answered := len(won) + len(f.errs)
	timer := time.NewTimer(decideTimeout(set))
	defer timer.Stop()
	var grace <-chan time.Time // waiting for the gate's answer after a quorum
	var unanswered error       // why the attempt stopped waiting for masters
	take := func(rp reply) {
		answered++
		gateDone = gateDone || rp.m == gm
		switch {
		case rp.err == nil:
			won = append(won, &part{m: rp.m, l: rp.l})
		case errors.Is(rp.err, renewlock.ErrNotAcquired):
			f.held++
			f.heldOn = append(f.heldOn, rp.m)
			f.gateHeld = f.gateHeld || rp.m == gm
		case errors.Is(rp.err, renewlock.ErrClientClosed):
			f.closed = true
			f.errs = append(f.errs, fmt.Errorf("%s: %w", rp.m.name, rp.err))
		default:
			if errors.Is(rp.err, renewlock.ErrRejected) {
				f.rejected++
			}
			f.errs = append(f.errs, fmt.Errorf("%s: %w", rp.m.name, rp.err))
		}
	}
wait:
	for answered < n && !f.gateHeld {
		if len(won) >= c.quorum || answered-len(won) > n-c.quorum {
			// Decided, but for the gate's answer: it may veto a win,
			// and it tells a loser to wait in its queue.
			if gateDone {
				break
			}
			if grace == nil {
				// The gate normally answers with the others; one that
				// does not (paused, slow) is not waited for long.
				g := time.NewTimer(min(decideTimeout(set), max(2*time.Millisecond, 2*time.Since(start))))
				defer g.Stop()
				grace = g.C
			}
		}
		select {
		case rp := <-r.replies:
			take(rp)
		case <-grace:
			break wait
		case <-timer.C:
			unanswered = fmt.Errorf("no reply within %v", decideTimeout(set))
			break wait
		case <-actx.Done():
			unanswered = context.Cause(actx)
			if ctx.Err() != nil {
				unanswered = ctx.Err()
			}
			break wait
		}
	}
	r.mu.Lock()
	r.decided = true
	for drained := false; !drained; {
		select {
		case rp := <-r.replies:
			take(rp)
		default:
			drained = true
		}
	}
	var l *Lock
	if len(won) >= c.quorum && !f.closed && !f.gateHeld {
		l = newLock(c, key, opts, set, acancel, won)
		r.won = l
	}
	r.mu.Unlock()

	if l == nil {
		acancel()
		stopCaller()
		if answered < n && unanswered != nil {
			f.errs = append(f.errs, fmt.Errorf("%d of %d masters: %w", n-answered, n, unanswered))
		}
		if c.ctx.Err() != nil {
			f.closed = true
		}
		// Next in line only if a quorum is in reach once the holder
		// releases: a waiter cut off from most masters must not keep the
		// gate from the others.
		f.reachable = len(won) + f.held
		var taken []*part
		for _, p := range won {
			switch {
			case have[p.m] != nil:
			case keep && p.m == gm && f.reachable >= c.quorum:
				f.gate = p.l // next in line: the caller keeps it
			default:
				taken = append(taken, p)
			}
		}
		if keep {
			releaseParts(context.Background(), taken, set)
		} else if len(taken) > 0 {
			c.spawn(func() { releaseParts(context.Background(), taken, set) })
		}
		return nil, f
	}
	for _, p := range won {
		l.watch(p)
	}
	err := l.writeBack(actx)
	stopCaller()
	if err == nil && !c.register(l) {
		err = renewlock.ErrClientClosed
		f.closed = true
	}
	if err != nil {
		l.abort()
		f.writeBack = !f.closed
		f.errs = append(f.errs, err)
		if ctx.Err() != nil {
			f.errs = append(f.errs, ctx.Err())
		}
		return nil, f
	}
	return l, nil
}

// raiseResult is one master's answer to raise.lua.
type raiseResult struct {
	p     *part
	token uint64
	ours  bool
	err   error
}

// raise runs raise.lua for p: the token stored on p's master becomes at
// least token.
func raise(ctx context.Context, p *part, prefix, key string, token uint64) raiseResult {
	rkey, owner := bridge.LockOwner(p.l)
	vals, err := raiseScript.Run(ctx, p.m.rdb, []string{rkey, prefix + FloorKeyPrefix + key},
		owner, strconv.FormatUint(token, 10)).Int64Slice()
	if err == nil && len(vals) != 2 {
		err = fmt.Errorf("redlock: raise script returned %v", vals)
	}
	if err != nil {
		return raiseResult{p: p, err: fmt.Errorf("%s: token write-back: %w", p.m.name, bridge.Classify(err, rkey))}
	}
	return raiseResult{p: p, token: uint64(max(vals[1], 0)), ours: vals[0] == 1}
}
