package redlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/bridge"
)

// A Lock is one acquisition of a key on a quorum of masters. While it is
// held, each master's renewlock.Client renews its part. It is held as long
// as a quorum of its parts are: when fewer are left (a master lost the key,
// or renewals there kept failing until the part's validity deadline), Done
// closes and Err wraps renewlock.ErrLeaseLost, and the remaining parts are
// released. A Lock is safe for use by several goroutines.
//
// The holder must stop acting on the protected resource as soon as Done is
// closed, and should pass Token to any resource that can check it.
type Lock struct {
	c      *Client
	key    string
	opts   []renewlock.Option // of the acquisition, for the parts taken later
	set    bridge.Settings
	quorum int
	// stopStragglers cancels the attempts still in flight on masters
	// that had not answered when the lock was won.
	stopStragglers context.CancelFunc

	relMu sync.Mutex // one Release at a time

	mu         sync.Mutex
	token      uint64 // set once the write-back is acknowledged, before the lock is handed out
	parts      []*part
	state      lockState
	done       chan struct{}
	err        error // why done was closed
	lost       bool  // err wraps ErrLeaseLost
	released   bool  // Release reached a definitive outcome
	releaseErr error
	ctx        context.Context // see Context
	cancel     context.CancelCauseFunc
	repair     *time.Timer // the next attempt to take masters it lacks
}

type lockState uint8

const (
	stateAcquiring lockState = iota // writing the token back
	stateHeld
	stateReleasing
	stateFinished // lost, released, closed, or the acquisition failed
)

// A part is the lock's lease on one master: a renewlock mutex lock.
type part struct {
	m    *master
	l    *renewlock.Lock
	lost bool // its lease was lost (its Err wraps ErrLeaseLost)
	stop func() bool
	free context.CancelFunc
}

func newLock(c *Client, key string, opts []renewlock.Option, set bridge.Settings, stop context.CancelFunc, parts []*part) *Lock {
	return &Lock{c: c, key: key, opts: opts, set: set, quorum: c.quorum, stopStragglers: stop,
		parts: slices.Clone(parts), done: make(chan struct{})}
}

// Key returns the key the lock was taken on, as passed to Acquire.
func (l *Lock) Key() string { return l.key }

// Token returns the fencing token of this acquisition: the largest token
// the quorum's masters issued, written back to a quorum before the lock
// was handed out. For one key it is larger than the token of every
// acquisition handed out before this one began, as long as a master shared
// by the two quorums kept its data, or the masters' clocks have passed the
// earlier token (the package documentation has the exact terms). Hand it
// to the protected resource and have it reject writes carrying a smaller
// token than the largest it has seen.
func (l *Lock) Token() uint64 { return l.token }

// Done returns a channel that is closed when the lock is no longer held:
// fewer than a quorum of its masters still hold it (Err wraps
// renewlock.ErrLeaseLost), it was released (ErrReleased), or the Client was
// closed (ErrClientClosed).
func (l *Lock) Done() <-chan struct{} { return l.done }

// Err returns nil while the lock is held, and after Done is closed the
// reason: an error wrapping renewlock.ErrLeaseLost, renewlock.ErrReleased,
// or renewlock.ErrClientClosed.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Context returns a copy of parent that is cancelled when parent is done or
// when the lock stops being held, whichever comes first; its cause
// (context.Cause) is then Err. Call the returned cancel function when the
// work is finished, to release the context's resources.
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	l.mu.Lock()
	if l.ctx == nil {
		l.ctx, l.cancel = context.WithCancelCause(context.Background())
		if l.err != nil {
			l.cancel(l.err)
		}
	}
	lctx := l.ctx
	l.mu.Unlock()
	stop := context.AfterFunc(lctx, func() { cancel(context.Cause(lctx)) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

// finish closes Done with err, once. l.mu is held. It reports whether this
// call closed it.
func (l *Lock) finishLocked(err error, lost bool) bool {
	if l.err != nil {
		return false
	}
	l.err, l.lost = err, lost
	l.state = stateFinished
	if l.repair != nil {
		l.repair.Stop()
		l.repair = nil
	}
	close(l.done)
	if l.cancel != nil {
		l.cancel(err)
	}
	return true
}

// watch makes l hear when p's lease ends, without a goroutine per lock
// (context.AfterFunc runs the callback only then).
func (l *Lock) watch(p *part) {
	ctx, free := p.l.Context(context.Background())
	l.mu.Lock()
	p.free = free
	l.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.partDone(p) })
	l.mu.Lock()
	p.stop = stop
	l.mu.Unlock()
}

// partDone handles the end of p's lease. Only a loss counts: a part ends
// with ErrReleased when the lock releases it, and with ErrClientClosed
// when Close has already closed the lock.
func (l *Lock) partDone(p *part) {
	err := p.l.Err()
	if !errors.Is(err, renewlock.ErrLeaseLost) {
		return
	}
	l.mu.Lock()
	if p.lost {
		l.mu.Unlock()
		return
	}
	p.lost = true
	left := l.validLocked()
	if held := l.state == stateHeld; !held || left >= l.quorum {
		if held {
			l.scheduleRepairLocked()
		}
		l.mu.Unlock()
		if held {
			l.set.Logger.Warn("redlock: a master lost its part of the lock; still held by a quorum",
				"key", l.key, "token", l.token, "master", p.m.name, "masters_left", left, "quorum", l.quorum, "cause", err)
		}
		return
	}
	lerr := fmt.Errorf("%w: redlock key %q (token %d): only %d of %d masters still hold it, quorum %d; %s: %w",
		renewlock.ErrLeaseLost, l.key, l.token, left, len(l.c.masters), l.quorum, p.m.name, err)
	l.finishLocked(lerr, true)
	parts := slices.Clone(l.parts)
	l.mu.Unlock()
	l.set.Logger.Warn("redlock: lease lost", "key", l.key, "token", l.token, "masters_left", left, "quorum", l.quorum, "cause", err)
	l.stopStragglers()
	l.c.forget(l)
	// The remaining parts are worth nothing now: free them for others.
	l.c.spawn(func() { releaseParts(context.Background(), parts, l.set) })
}

// validLocked counts the parts not known to be lost. l.mu is held.
func (l *Lock) validLocked() int {
	n := 0
	for _, p := range l.parts {
		if !p.lost && !errors.Is(p.l.Err(), renewlock.ErrLeaseLost) {
			n++
		}
	}
	return n
}

// join adds a straggler's part to the lock, or releases it if the lock is
// no longer wanted.
func (l *Lock) join(p *part) {
	l.mu.Lock()
	if l.state == stateReleasing || l.state == stateFinished {
		l.mu.Unlock()
		releaseParts(context.Background(), []*part{p}, l.set)
		return
	}
	l.parts = append(l.parts, p)
	token := l.token
	l.mu.Unlock()
	l.watch(p)
	if token != 0 {
		l.raiseLate(p, token)
	}
}

// raiseLate writes the token back to a part that joined after the
// write-back (not needed for the guarantee: the quorum acknowledged it).
func (l *Lock) raiseLate(p *part, token uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), decideTimeout(l.set))
	defer cancel()
	if res := raise(ctx, p, l.set.Prefix, l.key, token); res.err != nil {
		l.set.Logger.Warn("redlock: token write-back to a master that joined late failed", "key", l.key, "master", p.m.name, "err", res.err)
	}
}

// maxWriteBackRounds bounds the write-back: a round raises the token on
// every part not yet at it; a master that reports a larger token (its
// floor) starts another round with that one.
const maxWriteBackRounds = 8

// writeBack raises the stored token on every part to the largest token the
// parts were issued, until a quorum acknowledges the same value, then
// makes the lock held. It fails when the quorum is out of reach, or when
// ctx or the decision timeout ends first.
func (l *Lock) writeBack(ctx context.Context) error {
	l.mu.Lock()
	parts := slices.Clone(l.parts)
	l.mu.Unlock()
	var token uint64
	for _, p := range parts {
		token = max(token, p.l.Token())
	}
	acked := make(map[*part]uint64)
	refused := make(map[*part]bool)
	inflight := make(map[*part]bool)
	lastErr := make(map[*part]error)
	results := make(chan raiseResult, maxWriteBackRounds*len(parts))
	timeout := time.NewTimer(decideTimeout(l.set))
	defer timeout.Stop()
	fail := func(why string) error {
		var errs []error
		for _, p := range parts {
			if e := lastErr[p]; e != nil {
				errs = append(errs, e)
			}
		}
		return fmt.Errorf("%s (%d acknowledged, %d refused): %w", why, l.countAt(acked, token), len(refused), errors.Join(errs...))
	}
	for round := 0; round < maxWriteBackRounds; round++ {
		sent := 0
		for _, p := range parts {
			if refused[p] || inflight[p] || acked[p] == token {
				continue
			}
			inflight[p] = true
			sent++
			want := token
			l.c.spawn(func() { results <- raise(ctx, p, l.set.Prefix, l.key, want) })
		}
		raised := false
		for !raised && len(inflight) > 0 && l.countAt(acked, token) < l.quorum {
			select {
			case res := <-results:
				delete(inflight, res.p)
				switch {
				case res.err != nil:
					lastErr[res.p] = res.err
					if errors.Is(res.err, renewlock.ErrRejected) {
						refused[res.p] = true
					}
				case !res.ours:
					refused[res.p] = true
					lastErr[res.p] = fmt.Errorf("%s: the lock was no longer held there at the token write-back", res.p.m.name)
				default:
					acked[res.p] = res.token
					if res.token > token {
						// A token above all the quorum issued: its floor.
						token, raised = res.token, true
					}
				}
			case <-timeout.C:
				return fail(fmt.Sprintf("no quorum of acknowledgements within %v", decideTimeout(l.set)))
			case <-ctx.Done():
				return fail(context.Cause(ctx).Error())
			}
		}
		if l.countAt(acked, token) >= l.quorum {
			return l.commit(token, parts)
		}
		if len(parts)-len(refused) < l.quorum {
			return fail("the quorum is out of reach")
		}
		if !raised && sent == 0 && len(inflight) == 0 {
			return fail("no master left to ask")
		}
		if !raised {
			// Transient errors: ask those masters again shortly.
			t := time.NewTimer(2 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fail(context.Cause(ctx).Error())
			}
		}
	}
	return fail(fmt.Sprintf("tokens kept rising for %d rounds", maxWriteBackRounds))
}

// countAt counts the parts that acknowledged token.
func (l *Lock) countAt(acked map[*part]uint64, token uint64) int {
	n := 0
	for _, t := range acked {
		if t == token {
			n++
		}
	}
	return n
}

// commit sets the token and makes the lock held, if a quorum of its parts
// is still valid; parts that joined during the write-back get the token
// too.
func (l *Lock) commit(token uint64, written []*part) error {
	l.mu.Lock()
	l.token = token
	valid := l.validLocked()
	if valid < l.quorum {
		l.mu.Unlock()
		return fmt.Errorf("only %d of its masters still held it when the write-back was done, quorum %d", valid, l.quorum)
	}
	l.state = stateHeld
	l.scheduleRepairLocked()
	var late []*part
	for _, p := range l.parts {
		if !slices.Contains(written, p) {
			late = append(late, p)
		}
	}
	l.mu.Unlock()
	for _, p := range late {
		l.c.spawn(func() { l.raiseLate(p, token) })
	}
	return nil
}

// scheduleRepairLocked plans an attempt to take the key on the masters
// where the lock has no valid part, one renew interval from now, unless it
// has one on every master or an attempt is planned already. l.mu is held.
//
// A lock that holds only a bare quorum is lost when any one of its masters
// fails; one that holds every master survives any minority failing. So a
// held lock keeps taking what it lacks: masters another client held at the
// acquisition (a waiter that gave up, an attempt that yielded) and masters
// whose part was lost (a restart). Taking more masters while a quorum is
// held cannot admit anyone else, and each new part gets the lock's token.
func (l *Lock) scheduleRepairLocked() {
	if l.state != stateHeld || l.repair != nil || l.validLocked() >= len(l.c.masters) {
		return
	}
	l.repair = time.AfterFunc(jitter(l.set.Interval), func() { l.c.track(l.doRepair) })
}

// doRepair tries once to take the key on every master where the lock has
// no valid part, in parallel.
func (l *Lock) doRepair() {
	l.mu.Lock()
	l.repair = nil
	if l.state != stateHeld {
		l.mu.Unlock()
		return
	}
	// Forget parts known lost: their leases are gone.
	have := make(map[*master]bool)
	kept := l.parts[:0]
	for _, p := range l.parts {
		if p.lost {
			if p.free != nil {
				p.free()
			}
			continue
		}
		kept = append(kept, p)
		if p.l.Err() == nil {
			have[p.m] = true
		}
	}
	clear(l.parts[len(kept):])
	l.parts = kept
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.c.ctx, decideTimeout(l.set))
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range l.c.masters {
		if have[m] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if pl, err := m.rl.TryAcquire(ctx, l.key, l.opts...); err == nil {
				l.join(&part{m: m, l: pl})
			}
		}()
	}
	wg.Wait()
	l.mu.Lock()
	l.scheduleRepairLocked()
	l.mu.Unlock()
}

// abort ends an acquisition that failed after the quorum was won: every
// part is released, now and as stragglers arrive.
func (l *Lock) abort() {
	l.stopStragglers()
	l.mu.Lock()
	l.finishLocked(errors.New("redlock: acquisition failed"), false)
	parts := slices.Clone(l.parts)
	l.mu.Unlock()
	l.unwatch(parts)
	releaseParts(context.Background(), parts, l.set)
}

// unwatch stops listening to parts.
func (l *Lock) unwatch(parts []*part) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range parts {
		if p.stop != nil {
			p.stop()
		}
		if p.free != nil {
			p.free()
		}
	}
}

// closed is Close's end of the lock: Done closes with ErrClientClosed at
// once; the masters' Clients release the parts.
func (l *Lock) closed() {
	l.stopStragglers()
	l.mu.Lock()
	l.finishLocked(renewlock.ErrClientClosed, false)
	if !l.released {
		l.released, l.releaseErr = true, renewlock.ErrClientClosed
	}
	parts := slices.Clone(l.parts)
	l.mu.Unlock()
	l.unwatch(parts)
}

// Release gives the lock up on every master, in parallel: each part is
// released owner-checked (renewlock's Release: it never touches another
// owner's lease, and passes the master's lock to the next waiter in its
// queue). It returns nil if a quorum held the lock until the release. It
// returns an error wrapping renewlock.ErrLeaseLost if the lock had been
// lost before, or if the release found that fewer than a quorum still held
// it: work done under the lock may then not have been exclusive. Calling
// Release again, also concurrently, returns the same result.
//
// Masters that cannot be reached are left to their leases, which end
// within one TTL since renewal has stopped: if a quorum confirmed the
// release, that is only logged. If fewer did (ctx ended, a majority down),
// the error says which masters did not answer, Done is closed, and a later
// Release tries them again.
func (l *Lock) Release(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("%w: nil context", renewlock.ErrInvalidArgument)
	}
	l.relMu.Lock()
	defer l.relMu.Unlock()
	l.mu.Lock()
	if l.released {
		err := l.releaseErr
		l.mu.Unlock()
		return err
	}
	var lostErr error
	if l.lost {
		lostErr = l.err
	}
	if l.state == stateHeld {
		l.state = stateReleasing
	}
	parts := slices.Clone(l.parts)
	l.mu.Unlock()
	l.stopStragglers()

	errs := l.releaseQuorum(ctx, parts)
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	lostParts := 0
	var unknown, lostErrs []error
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, renewlock.ErrLeaseLost):
			lostParts++
			lostErrs = append(lostErrs, fmt.Errorf("%s: %w", parts[i].m.name, err))
		case errors.Is(err, errUnanswered) && ok >= l.quorum:
			// Still on its way, and not needed.
		default:
			unknown = append(unknown, fmt.Errorf("%s: %w", parts[i].m.name, err))
		}
	}
	var result error
	// Masters that did not answer hold at most a minority of leases
	// once a quorum confirmed: those end within one TTL and stop nobody.
	final := len(unknown) == 0 || ok >= l.quorum
	if len(unknown) > 0 && final {
		l.set.Logger.Warn("redlock: released on a quorum; some masters did not confirm, their leases end within one TTL",
			"key", l.key, "token", l.token, "err", errors.Join(unknown...))
		unknown = nil
	}
	l.mu.Lock()
	switch {
	case lostErr != nil:
		result = errors.Join(append([]error{lostErr}, unknown...)...)
	case len(parts)-lostParts < l.quorum:
		// The quorum was gone before the release, unseen (a master
		// restarted empty, say, and renewals had not yet noticed).
		lerr := fmt.Errorf("%w: redlock key %q (token %d): at release only %d of %d masters still held it, quorum %d: %w",
			renewlock.ErrLeaseLost, l.key, l.token, len(parts)-lostParts, len(l.c.masters), l.quorum, errors.Join(lostErrs...))
		if !l.finishLocked(lerr, true) {
			lerr = l.err
		}
		result = errors.Join(append([]error{lerr}, unknown...)...)
	case !final:
		l.finishLocked(renewlock.ErrReleased, false)
		result = fmt.Errorf("redlock: release %q: %d of %d masters did not confirm (their leases end within one TTL; Release again to retry): %w",
			l.key, len(unknown), len(parts), errors.Join(unknown...))
	default:
		l.finishLocked(renewlock.ErrReleased, false)
	}
	if final {
		l.released, l.releaseErr = true, result
	}
	l.mu.Unlock()
	if final {
		l.unwatch(parts)
		l.c.forget(l)
	}
	return result
}

// errUnanswered is the result of a part whose release had not answered
// when Release stopped waiting.
var errUnanswered = errors.New("no answer yet (the release goes on in the background, bounded by one TTL)")

// releaseQuorum releases parts and waits until a quorum confirmed, all
// answered, or ctx ends. The releases that have not answered by then go on
// in the background, each bounded by one TTL; their result is
// errUnanswered.
//
// The gate's part is released last, once the others have answered: its
// release hands the gate to the first waiter in its queue, who then finds
// the other masters free instead of racing their releases. With a quorum
// besides the gate, that costs Release no time: it returns before the
// gate's release.
func (l *Lock) releaseQuorum(ctx context.Context, parts []*part) []error {
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(parts))
	release := func(i int) {
		rctx, cancel := context.WithTimeout(context.Background(), min(l.set.TTL, closeTimeout))
		defer cancel()
		results <- result{i, parts[i].l.Release(rctx)}
	}
	gm := l.c.gate(l.key)
	gate := -1
	var others sync.WaitGroup
	for i, p := range parts {
		if p.m == gm {
			gate = i
			continue
		}
		others.Add(1)
		l.c.spawn(func() {
			defer others.Done()
			release(i)
		})
	}
	if gate >= 0 {
		l.c.spawn(func() {
			others.Wait()
			release(gate)
		})
	}
	errs := make([]error, len(parts))
	for i := range errs {
		errs[i] = errUnanswered
	}
	for ok, n := 0, 0; n < len(parts) && ok < l.quorum; n++ {
		select {
		case r := <-results:
			errs[r.i] = r.err
			if r.err == nil {
				ok++
			}
		case <-ctx.Done():
			for i := range errs {
				if errs[i] == errUnanswered {
					errs[i] = fmt.Errorf("%w (%w)", ctx.Err(), errUnanswered)
				}
			}
			return errs
		}
	}
	return errs
}

// releaseParts releases parts in parallel, each bounded by ctx and by one
// TTL, and returns each one's result.
func releaseParts(ctx context.Context, parts []*part, set bridge.Settings) []error {
	errs := make([]error, len(parts))
	if len(parts) == 0 {
		return errs
	}
	ctx, cancel := context.WithTimeout(ctx, min(set.TTL, closeTimeout))
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.l.Release(ctx)
		}()
	}
	wg.Wait()
	return errs
}
