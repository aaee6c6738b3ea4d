package renewlock

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// How long the notification connection may be silent before it is pinged.
const pubsubHealthCheck = 15 * time.Second

// waitHub lets blocked Acquire calls sleep until the lock they wait for is
// released. Release publishes on a channel named after the lock's Redis key;
// the hub holds ONE subscription connection for the whole Client, subscribes
// to a channel while some goroutine waits on it, and on each notification
// wakes only the first local waiter for that key (FIFO), so a release causes
// one retry per client, not a herd.
//
// A waiter must not miss a release that happens after its last failed
// attempt. So the first waiter of a key waits until Redis has confirmed the
// SUBSCRIBE (ready) and only then tries again; from then on every release
// reaches the head of the queue. A lost notification (connection dropped) is
// covered by each waiter's fallback timer at the holder's remaining TTL, and
// after a reconnection every head waiter is woken to try again at once.
type waitHub struct {
	rdb redis.UniversalClient

	mu     sync.Mutex
	ps     *redis.PubSub // created on first use
	chans  map[string]*chanState
	ops    []subOp       // SUBSCRIBE/UNSUBSCRIBE to send, in order
	opKick chan struct{} // wakes the sender (buffered 1)
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

type subOp struct {
	subscribe bool
	channel   string
}

type chanState struct {
	queue      []*waiter
	subscribed bool          // SUBSCRIBE sent, no UNSUBSCRIBE since
	pending    int           // SUBSCRIBEs sent and not yet confirmed
	confirmed  bool          // Redis confirmed the current subscription
	ready      chan struct{} // closed when confirmed
	// After releasing to other clients, this client's waiters let them go
	// first: the release's own notification wakes the head only at
	// yieldUntil; the next notification (another client released) at once.
	skipNext   bool
	yieldUntil time.Time
}

type waiter struct {
	ch     string
	cfg    *config
	st     *chanState
	wake   chan struct{} // buffered 1: "try now"
	handed chan handoff  // buffered 1: outcome of a hand-off to this waiter
	ready  <-chan struct{}
	head   bool // was first in its queue when it joined

	// Guarded by the hub's mu.
	reserved bool // a Release is handing the lock to this waiter
	gone     bool // giving up: not to be reserved
}

// handoff is what a releasing lock of the same client tells a reserved
// waiter: here is the lock; or retry adopting this owner id (the outcome
// was unknown); or neither: keep waiting.
type handoff struct {
	lock  *Lock
	adopt string
}

// yieldFor is how long a client's waiters hold back after it released a lock
// that other clients wait for, so that one of those gets it.
const yieldFor = 2 * time.Millisecond

func newWaitHub(rdb redis.UniversalClient) *waitHub {
	return &waitHub{
		rdb:    rdb,
		chans:  make(map[string]*chanState),
		opKick: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
}

// waiting reports whether some goroutine of this client waits on ch; a new
// Acquire then queues behind it instead of barging in.
func (h *waitHub) waiting(ch string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.chans[ch]
	return st != nil && len(st.queue) > 0
}

// join queues a waiter for ch, subscribing if it is the first.
func (h *waitHub) join(ch string, cfg *config) (*waiter, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClientClosed
	}
	if h.ps == nil {
		h.start()
	}
	st := h.chans[ch]
	if st == nil {
		st = &chanState{}
		h.chans[ch] = st
	}
	if !st.subscribed {
		st.subscribed, st.confirmed = true, false
		st.pending++
		st.ready = make(chan struct{})
		h.send(subOp{subscribe: true, channel: ch})
	}
	w := &waiter{ch: ch, cfg: cfg, st: st, wake: make(chan struct{}, 1), handed: make(chan handoff, 1),
		ready: st.ready, head: len(st.queue) == 0}
	st.queue = append(st.queue, w)
	return w, nil
}

// leave removes w from its queue. acquired says whether w got the lock; if
// it did not, the next waiter is woken to try in its place, so that a
// notification w consumed is never lost.
func (h *waitHub) leave(w *waiter, acquired bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := w.st
	for i, x := range st.queue {
		if x == w {
			st.queue = append(st.queue[:i], st.queue[i+1:]...)
			if i == 0 && len(st.queue) > 0 {
				pendingWake := len(w.wake) > 0
				if !acquired || pendingWake {
					signal(st.queue[0].wake)
				}
			}
			break
		}
	}
	if len(st.queue) == 0 && st.subscribed && !h.closed {
		st.subscribed, st.confirmed = false, false
		h.send(subOp{subscribe: false, channel: w.ch})
		if st.pending == 0 {
			delete(h.chans, w.ch)
		}
	}
}

// queued returns the number of waiters of this client for ch.
func (h *waitHub) queued(ch string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.chans[ch]; st != nil {
		return len(st.queue)
	}
	return 0
}

// reserve picks the first waiter for ch that a Release may hand the lock
// to, and reports how many subscriptions to ch this client has sent (0 or 1,
// see ownSubscriptions).
func (h *waitHub) reserve(ch string) (*waiter, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.chans[ch]
	if st == nil || h.closed {
		return nil, 0
	}
	own := 0
	if st.subscribed { // sent: Redis may count it already
		own = 1
	}
	for _, w := range st.queue {
		if !w.gone && !w.reserved {
			w.reserved = true
			return w, own
		}
	}
	return nil, own
}

// deliver ends w's reservation with the hand-off's outcome.
func (h *waitHub) deliver(w *waiter, ho handoff) {
	h.mu.Lock()
	w.reserved = false
	h.mu.Unlock()
	w.handed <- ho // buffered, and only one reservation at a time
}

// withdraw marks w as giving up. It reports whether a hand-off to w is under
// way, whose outcome w must then take from w.handed.
func (h *waitHub) withdraw(w *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.gone = true
	return w.reserved
}

// ownSubscriptions returns how many subscriptions to ch this client has
// sent (0 or 1). Redis may count one before this client sees it confirmed;
// counting it early at worst lets this client keep the lock a little longer,
// counting it late would make it yield to nobody.
func (h *waitHub) ownSubscriptions(ch string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.chans[ch]; st != nil && st.subscribed {
		return 1
	}
	return 0
}

// expectOwnRelease makes this client's waiters for ch let other clients go
// first after the release about to be sent. Call it before sending, since
// the release's notification may arrive before its reply.
func (h *waitHub) expectOwnRelease(ch string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.chans[ch]; st != nil {
		st.skipNext, st.yieldUntil = true, time.Now().Add(yieldFor)
	}
}

// cancelOwnRelease undoes expectOwnRelease: nobody else waits after all.
func (h *waitHub) cancelOwnRelease(ch string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.chans[ch]; st != nil {
		st.skipNext, st.yieldUntil = false, time.Time{}
	}
}

// yieldLeft returns how much longer this client's waiters for ch hold back.
func (h *waitHub) yieldLeft(ch string) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.chans[ch]; st != nil {
		return time.Until(st.yieldUntil)
	}
	return 0
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// send queues a subscription change for the sender goroutine. h.mu is held.
func (h *waitHub) send(op subOp) {
	h.ops = append(h.ops, op)
	signal(h.opKick)
}

// start creates the subscription connection and its two goroutines: one
// sends SUBSCRIBE/UNSUBSCRIBE (so no caller blocks on the network while
// holding h.mu), one receives. h.mu is held.
func (h *waitHub) start() {
	h.ps = h.rdb.Subscribe(context.Background())
	h.wg.Add(2)
	go h.sender()
	go h.receiver()
}

func (h *waitHub) sender() {
	defer h.wg.Done()
	for {
		select {
		case <-h.opKick:
		case <-h.stop:
			return
		}
		h.mu.Lock()
		ops := h.ops
		h.ops = nil
		h.mu.Unlock()
		for _, op := range ops {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if op.subscribe {
				// A failed write is retried by go-redis on reconnection,
				// which resubscribes every channel it knows.
				_ = h.ps.Subscribe(ctx, op.channel)
			} else {
				_ = h.ps.Unsubscribe(ctx, op.channel)
			}
			cancel()
		}
	}
}

func (h *waitHub) receiver() {
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
			h.disconnected()
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
			h.notify(m.Channel)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				h.confirmed(m.Channel)
			}
		}
	}
}

// notify wakes the head waiter of ch. A notification of this client's own
// release for other clients keeps the yield; any other ends it.
func (h *waitHub) notify(ch string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.chans[ch]; st != nil {
		if st.skipNext {
			st.skipNext = false
		} else {
			st.yieldUntil = time.Time{}
		}
		if len(st.queue) > 0 {
			signal(st.queue[0].wake)
		}
	}
}

// confirmed handles Redis's reply to a SUBSCRIBE.
func (h *waitHub) confirmed(ch string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.chans[ch]
	if st == nil {
		return
	}
	if st.pending > 0 {
		st.pending--
	}
	switch {
	case st.pending > 0:
		// An older SUBSCRIBE's reply; ours is still to come.
	case !st.subscribed:
		if len(st.queue) == 0 {
			delete(h.chans, ch)
		}
	case !st.confirmed:
		st.confirmed = true
		close(st.ready)
	case len(st.queue) > 0:
		// Resubscribed after a reconnection: releases may have been missed.
		signal(st.queue[0].wake)
	}
}

// disconnected forgets outstanding confirmations: go-redis resubscribes all
// channels on the new connection and each gets one fresh confirmation.
func (h *waitHub) disconnected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch, st := range h.chans {
		st.pending = 0
		if !st.subscribed && len(st.queue) == 0 {
			delete(h.chans, ch)
		}
	}
}

// close ends the subscription and its goroutines. Waiters notice through the
// Client's closing channel.
func (h *waitHub) close() {
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
