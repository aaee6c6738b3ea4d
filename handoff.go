package renewlock

import (
	"context"
	"fmt"
	"time"
)

// maxChain bounds how many times in a row a lock may pass between waiters of
// one client without being released to everyone. It matters only where the
// script cannot see other clients' subscriptions (Redis Cluster counts only
// the node's own subscribers), so no client can starve the others.
const maxChain = 64

// handOff is the fast path of Release under contention. When goroutines of
// this Client wait for the key, the lock passes straight to the longest
// waiting one in a single round trip — the new owner id and a new fencing
// token are written in the same script that checks the old owner — instead
// of a release, a notification and a new attempt (three trips).
//
// Fairness between clients: a lock taken from Redis may be handed on as many
// times as there were local waiters when it was taken (a cohort: each of them
// gets one turn, latecomers wait for the next cohort). After that, the script
// hands off only if no other client is subscribed to the key's channel;
// otherwise it releases for them, and this client's waiters hold back
// briefly so that another client's waiter gets the lock.
//
// It reports whether it dealt with the release (false: no local waiter, or
// the chain is long enough; do a plain release) and Release's result.
func (c *Client) handOff(ctx context.Context, l *Lock) (bool, error) {
	if l.chain >= maxChain {
		return false, nil
	}
	w, own := c.hub.reserve(l.rkey)
	if w == nil {
		return false, nil
	}
	mode := -1 // unconditional: the cohort has turns left
	if l.cohort <= 0 {
		mode = own
	}
	if mode != -1 {
		c.hub.expectOwnRelease(l.rkey) // in case it releases for others
	}
	cfg := w.cfg
	owner := newOwnerID()
	sent := time.Now()
	res, err := c.co.run(ctx, acquireScript, []string{l.rkey}, []any{
		owner, cfg.ttl.Milliseconds(), cfg.holder,
		l.owner, l.rkey, mode, l.cfg.ttl.Milliseconds(),
	}, nil).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("renewlock: hand-off script returned %d values", len(res))
	}
	if mode != -1 && (err != nil || res[0] != 2) {
		c.hub.cancelOwnRelease(l.rkey)
	}
	if err != nil {
		// Unknown outcome: the waiter retries with the same owner id, which
		// adopts the lock if the hand-off did happen.
		c.hub.deliver(w, handoff{adopt: owner})
		return true, l.releaseFailed(fmt.Errorf("renewlock: release %q: %w", l.key, classify(err, l.rkey)))
	}
	switch res[0] {
	case 1, 3:
		next := &Lock{
			c: c, key: l.key, rkey: l.rkey, owner: owner, token: uint64(res[1]), cfg: cfg,
			done: make(chan struct{}), chain: l.chain + 1, cohort: l.cohort - 1,
		}
		if mode != -1 { // a new cohort: everyone waiting now, but the new holder
			next.cohort = c.hub.queued(l.rkey) - 1
		}
		if !c.renew.add(next, sent) { // closing
			c.cleanup(l.rkey, owner, cfg)
			next = nil
		}
		c.hub.deliver(w, handoff{lock: next})
		if res[0] == 3 {
			l.lose("lease had lapsed before the release", true)
			return true, l.Err()
		}
		l.finish(ErrReleased, false)
		return true, nil
	case 2: // released for other clients
		c.hub.deliver(w, handoff{})
		l.finish(ErrReleased, false)
		return true, nil
	default: // another owner has it
		c.hub.deliver(w, handoff{})
		l.lose("not the owner at release (expired or taken over)", true)
		return true, l.Err()
	}
}
