package renewlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
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
// is held. pending reports that ctx ended with the call on the wire: its
// reply then goes to a clean-up, and the caller must not clean up itself.
func (c *Client) attempt(ctx context.Context, le *lease, join bool) (res acquireResult, pending bool, err error) {
	joinArg := "0"
	switch {
	case join && le.joined:
		joinArg = "2" // an earlier attempt may have queued it already
	case join:
		joinArg = "1"
		le.joined = true
	}
	// If the caller gives up after the call was sent, undo what it did.
	abandoned := func(*redis.Cmd) { c.cleanup(le.rkey, le.id, le.cfg) }
	cmd, pending := c.co.run(ctx, acquireScript, []string{le.rkey},
		[]any{le.id, le.cfg.ttl.Milliseconds(), le.cfg.holder, joinArg, c.hub.channel}, abandoned)
	if pending {
		return res, true, cmd.Err()
	}
	vals, err := cmd.Int64Slice()
	if err == nil && (len(vals) < 2 || (vals[0] == 2 && len(vals) < 3)) {
		err = fmt.Errorf("renewlock: acquire script returned %v", vals)
	}
	if err != nil {
		if !isReplyError(err) {
			// The outcome is unknown (timeout, connection lost): the same
			// id is retried or cleaned up, and both are safe.
			return res, false, err
		}
		return res, false, classify(err, le.rkey)
	}
	switch vals[0] {
	case 1:
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

// wait is the blocking acquisition of le: take the lock, or queue for it
// and sleep until it is granted, or until ctx ends.
func (c *Client) wait(ctx context.Context, le *lease) (*Lock, error) {
	key := le.lock.key
	if !c.eng.expect(le) {
		return nil, ErrClientClosed
	}
	// Grants can reach this Client once its subscription is confirmed; it
	// is made on the first contention and kept.
	ready := c.hub.ready
	join := isClosed(ready)
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
			if err := c.hub.failure(); err != nil {
				return nil, c.giveUp(le, fmt.Errorf("renewlock: acquire %q: waiting needs the grant channel %q: %w", key, c.hub.channel, err))
			}
		}
		sent := time.Now()
		res, pending, err := c.attempt(ctx, le, join)
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
				c.cleanup(le.rkey, le.id, le.cfg)
				return nil, ErrClientClosed
			case holdStale: // ask again: the script renews what is ours
				continue
			}
			return le.lock, nil
		case !res.queued:
			// Held, and not queued yet: wait until grants can reach us.
			c.hub.subscribe()
			select {
			case <-ready:
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
		if !c.eng.queued(le, sent, res.left, res.first) {
			c.cleanup(le.rkey, le.id, le.cfg)
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
		c.cleanup(le.rkey, le.id, le.cfg)
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

// How long the notification connection may be silent before it is pinged.
const pubsubHealthCheck = 15 * time.Second

// hub is the Client's one subscription: the channel on which Redis tells
// it that one of its waiters was granted a lock ("<id> <token>"). It is
// subscribed on the first blocking Acquire and stays until Close.
type hub struct {
	rdb     redis.UniversalClient
	eng     *engine
	channel string // prefix + "grant:" + a random id of this Client

	mu     sync.Mutex
	ps     *redis.PubSub
	ready  chan struct{} // closed once confirmed, or once subscribing failed
	err    error         // why subscribing failed
	seen   bool          // the first confirmation came
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newHub(rdb redis.UniversalClient, eng *engine, prefix string) *hub {
	return &hub{
		rdb: rdb, eng: eng, channel: prefix + "grant:" + newOwnerID(),
		ready: make(chan struct{}), stop: make(chan struct{}),
	}
}

// subscribe starts subscribing if that has not begun, and returns a
// channel closed once grants can reach this Client (or subscribing failed,
// see failure).
func (h *hub) subscribe() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ps == nil && !h.closed {
		// No channel yet: nothing is sent in the caller's goroutine.
		h.ps = h.rdb.Subscribe(context.Background())
		h.wg.Add(2)
		go h.sender()
		go h.receiver()
	}
	return h.ready
}

// failure returns why subscribing failed, or nil.
func (h *hub) failure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// sender sends the SUBSCRIBE. If the write fails, go-redis subscribes again
// when the receiver reconnects.
func (h *hub) sender() {
	defer h.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = h.ps.Subscribe(ctx, h.channel)
}

func (h *hub) receiver() {
	defer h.wg.Done()
	ctx := context.Background()
	backoff := 10 * time.Millisecond
	for {
		msg, err := h.ps.ReceiveTimeout(ctx, pubsubHealthCheck)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				_ = h.ps.Ping(ctx) // a dead connection fails the next read
				continue
			}
			if rerr := classify(err, ""); isRejected(rerr) {
				h.fail(rerr) // the user may not subscribe: waiting cannot work
			}
			select {
			case <-time.After(backoff):
			case <-h.stop:
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			h.deliver(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				h.confirmed()
			}
		}
	}
}

// confirmed handles Redis's confirmation of the subscription: the first
// lets waiters queue; a later one follows a reconnection, during which
// grants may have been missed.
func (h *hub) confirmed() {
	h.mu.Lock()
	first := !h.seen
	h.seen = true
	if first && h.err == nil {
		close(h.ready)
	}
	h.mu.Unlock()
	if !first {
		h.eng.pollWaiting()
	}
}

// fail records that subscribing failed with err, for the waiters.
func (h *hub) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil && !h.seen {
		h.err = err
		close(h.ready)
	}
}

// deliver hands a grant message "<id> <token>" to the engine.
func (h *hub) deliver(payload string) {
	id, tok, ok := strings.Cut(payload, " ")
	if !ok {
		return
	}
	token, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return
	}
	h.eng.granted(id, token, time.Time{})
}

// close ends the subscription and its goroutines.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	ps := h.ps
	h.mu.Unlock()
	close(h.stop)
	if ps != nil {
		_ = ps.Close()
	}
	h.wg.Wait()
}
