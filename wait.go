package renewlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Waiting, end to end. A blocking Acquire that finds the lock held joins
// the lock's queue in Redis in the same script call (acquire.lua), and then
// sleeps until the lock is granted to it: the release script makes the
// first live waiter the holder (new owner, token and lease) and publishes
// that on the waiter's client's channel. Each Client subscribes to ONE
// channel of its own, once, for every key it will ever wait on, so a
// release costs Redis the same work however many clients wait, and waiters
// are served in arrival order across clients.
//
// A waiter's place is a lease (lease.go): the renewal loop renews it with
// the locks, so a crashed or cut-off waiter is skipped by server time. The
// renewal's reply also tells a waiter it was granted the lock if the pub/sub
// message was lost (connection dropped), and the head of the queue is
// renewed right after the holder's lease would end, so that a crashed
// holder's lock passes on at once.
//
// Interleavings and what covers them:
//   - a grant published before this Client's subscription is confirmed
//     would be lost: a waiter joins a queue only once the subscription is
//     confirmed (until then its attempt only tries);
//   - a grant that overtakes the reply of the attempt that queued the
//     waiter: the waiter's id is registered before the attempt is sent
//     (engine.expect), and the grant is kept for it;
//   - the caller's ctx ends before, while or after its attempt is on the
//     wire: never sent, nothing to undo; on the wire, the reply goes to a
//     clean-up that releases what it got or leaves the queue; after it,
//     giveUp withdraws the lease and the same clean-up runs — owner-checked
//     in one script, so a grant that lands before the clean-up is passed on
//     to the next waiter, and one after it cannot happen;
//   - Close while waiting: Close leaves the queue (or releases the granted
//     lock) for every waiting lease in its final round trip;
//   - the subscription drops: go-redis resubscribes, and once that is
//     confirmed every waiting lease is renewed at once, whose replies carry
//     any grant that was missed.

// acquireResult is the reply of acquire.lua.
type acquireResult struct {
	taken  bool
	queued bool
	token  uint64        // taken
	left   time.Duration // not taken: what is left of the holder's lease
	first  bool          // queued first in line
}

// attempt runs acquire.lua once for le; join asks to be queued if the lock
// is held, with channel as where the grant reaches this Client (grantPath).
// pending reports that ctx ended with the call on the wire: its reply then
// goes to a clean-up, and the caller must not clean up itself.
func (c *Client) attempt(ctx context.Context, le *lease, join bool, channel string) (res acquireResult, pending bool, err error) {
	joinArg := "0"
	switch {
	case join && le.joins > 0:
		joinArg = "2" // an earlier attempt may have queued it already
	case join:
		joinArg = "1"
	}
	if join {
		le.joins++ // read by engine.queued, from this goroutine
	}
	// If the caller gives up after the call was sent, undo what it did.
	abandoned := func(*redis.Cmd) { c.cleanup(le) }
	script, args := acquireScript, []any{le.id, le.cfg.ttl.Milliseconds(), le.cfg.holder, joinArg, channel, le.kind.code}
	if le.kind.shared {
		script, args = sharedAcquireScript, append(args, le.args.mode, le.args.limit)
	} else if le.kind == kindElection {
		args = append(args, le.args.value, le.args.notify)
	}
	var cmd *redis.Cmd
	acked := int64(-1)
	if le.cfg.replicas > 0 {
		// WAIT must follow on the same connection: no shared pipeline.
		var ack ackWanted
		ack.add(le.cfg)
		cmd, acked = runAcked(ctx, c.rdb, script, le.rkey, args, ack)
	} else {
		cmd, pending = c.co.run(ctx, script, []string{le.rkey}, args, abandoned)
	}
	if pending {
		return res, true, cmd.Err()
	}
	vals, err := cmd.Int64Slice()
	if err == nil && (len(vals) < 2 || (vals[0] == 2 && len(vals) < 3)) {
		err = fmt.Errorf("renewlock: acquire script returned %v", vals)
	}
	if err != nil {
		reloadOnTopologyError(ctx, c.rdb, err)
		if !isReplyError(err) {
			// The outcome is unknown (timeout, connection lost): the same
			// id is retried or cleaned up, and both are safe.
			return res, false, err
		}
		return res, false, classify(err, le.rkey)
	}
	switch vals[0] {
	case 1:
		if acked >= 0 && acked < int64(le.cfg.replicas) {
			// Taken, but not replicated: undo it before anything else
			// (owner-checked), so that a retry starts clean.
			c.undo(le)
			return res, false, fmt.Errorf("%w: %d of %d replicas acknowledged the acquisition of %q within %v; it was undone",
				ErrNotReplicated, acked, le.cfg.replicas, le.lock.key, le.cfg.replicaTimeout)
		}
		res.taken, res.token = true, uint64(vals[1])
	case 2:
		res.queued, res.first = true, vals[2] == 1
		fallthrough
	default:
		// The lease's end is in whole ms; 0 means within the millisecond.
		res.left = time.Duration(vals[1]) * time.Millisecond
	}
	return res, false, nil
}

// undo releases what le holds at once, in the caller, bounded by one TTL.
func (c *Client) undo(le *lease) {
	ctx, cancel := context.WithTimeout(context.Background(), min(le.cfg.ttl, closeTimeout))
	defer cancel()
	_ = le.kind.release().Run(ctx, c.rdb, []string{le.rkey}, le.id, "").Err()
}

// wait is the blocking acquisition of le: take the lock, or queue for it
// and sleep until it is granted, or until ctx ends.
func (c *Client) wait(ctx context.Context, le *lease) (*Lock, error) {
	key := le.lock.key
	if !c.eng.expect(le) {
		return nil, ErrClientClosed
	}
	// Grants can reach this Client once its subscription is confirmed; it
	// is made on the first contention (shard.go: in this key's slot, on a
	// Cluster).
	path := c.hub.path(ctx, le.rkey)
	defer c.hub.done(&path)
	join := c.hub.isReady(&path)
	var redisErr error       // the last Redis error, kept for the final error
	failed := func() error { // the error when ctx ends
		if redisErr != nil {
			return fmt.Errorf("renewlock: acquire %q: %w (last Redis error: %v)", key, ctx.Err(), redisErr)
		}
		return fmt.Errorf("renewlock: acquire %q: %w", key, ctx.Err())
	}
	backoff := 10 * time.Millisecond
	for {
		if join {
			if err := c.hub.pathFailure(&path); err != nil && path.sharded {
				// Shard channels are refused (ACL): the classic one, then.
				c.hub.done(&path)
				path = c.hub.path(ctx, le.rkey)
				join = c.hub.isReady(&path)
				continue
			} else if err != nil {
				return nil, c.giveUp(le, fmt.Errorf("renewlock: acquire %q: waiting needs the grant channel %q: %w", key, strings.TrimPrefix(path.channel, "\x00"), err))
			}
		}
		sent := time.Now()
		res, pending, err := c.attempt(ctx, le, join, path.channel)
		switch {
		case pending:
			c.eng.remove(le) // the clean-up takes care of Redis
			return nil, failed()
		case err != nil:
			if isRejected(err) { // retrying cannot fix it
				return nil, c.giveUp(le, fmt.Errorf("renewlock: acquire %q: %w", key, err))
			}
			redisErr = err
			if ctx.Err() != nil {
				return nil, c.giveUp(le, failed())
			}
			if err := c.sleep(ctx, backoff); err != nil {
				return nil, c.giveUp(le, failedOr(err, failed))
			}
			backoff = min(2*backoff, time.Second)
			continue
		case res.taken:
			switch c.eng.hold(le, res.token, sent) {
			case holdClosed:
				c.cleanup(le)
				return nil, ErrClientClosed
			case holdStale: // ask again: the script renews what is ours
				continue
			}
			return le.lock, nil
		case !res.queued:
			// Held, and not queued yet: wait until grants can reach us.
			select {
			case <-c.hub.pathReady(&path):
				join = true
				continue
			case <-ctx.Done():
				return nil, c.giveUp(le, failed())
			case <-c.ctx.Done():
				c.eng.remove(le)
				return nil, ErrClientClosed
			}
		}
		backoff = 10 * time.Millisecond
		if le.events == nil { // made only for a lease that waits
			le.events = make(chan waitEvent, 1)
		}
		if !c.eng.queued(le, sent, res.left, res.first) {
			c.cleanup(le)
			return nil, ErrClientClosed
		}
		ev, err := c.await(ctx, le)
		if err != nil {
			if errors.Is(err, ErrClientClosed) {
				return nil, err // Close leaves the queue for us
			}
			return nil, c.giveUp(le, failedOr(err, failed))
		}
		switch ev.kind {
		case waitGranted:
			return le.lock, nil
		case waitFailed:
			return nil, c.giveUp(le, fmt.Errorf("renewlock: acquire %q: %w", key, ev.err))
		}
		// waitGone: the queue was lost (restart, flush): try again.
	}
}

// await sleeps until le's queue entry has news, ctx ends (its error) or
// the Client closes (ErrClientClosed). A grant that arrived by the time ctx
// ended is taken rather than given back.
func (c *Client) await(ctx context.Context, le *lease) (waitEvent, error) {
	select {
	case ev := <-le.events:
		return ev, nil
	case <-ctx.Done():
	case <-c.ctx.Done():
		return waitEvent{}, ErrClientClosed
	}
	select {
	case ev := <-le.events:
		if ev.kind == waitGranted {
			return ev, nil
		}
	default:
	}
	return waitEvent{}, ctx.Err()
}

// sleep waits d, or until ctx ends (its error) or the Client closes.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClientClosed
	}
}

// failedOr returns err if the Client closed, else failed().
func failedOr(err error, failed func() error) error {
	if errors.Is(err, ErrClientClosed) {
		return err
	}
	return failed()
}

// giveUp ends a wait that failed with err: le is forgotten, and whatever
// Redis may hold of it (a queue entry, or the lock granted meanwhile) is
// released in the background, owner-checked, passing the lock on.
func (c *Client) giveUp(le *lease, err error) error {
	if c.eng.withdraw(le) {
		c.cleanup(le)
	}
	return err
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
