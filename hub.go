package renewlock

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// How long the notification connection may be silent before it is pinged.
const pubsubHealthCheck = 15 * time.Second

// hub is the Client's one pub/sub connection. It carries the Client's
// grant channel — on which Redis tells it that one of its waiters now holds
// a lock ("<id> <token>"), subscribed on the first contention and kept
// until Close — and the channels that listeners (election observers) ask
// for, subscribed while someone listens.
//
// Interleavings: a subscription is trusted only once Redis confirmed it,
// and a listener that joins while an older SUBSCRIBE or UNSUBSCRIBE of the
// same channel is in flight waits for the confirmation of its own (pending
// counts the SUBSCRIBEs not yet confirmed); after the connection drops,
// go-redis resubscribes every channel, and each re-confirmation tells the
// channel's users that messages may have been missed (waiting leases are
// renewed at once; listeners read again).
type hub struct {
	rdb     redis.UniversalClient
	eng     *engine
	channel string // the grant channel: prefix + "grant:" + id
	prefix  string
	id      string // a random id of this Client

	mu       sync.Mutex
	ps       *redis.PubSub
	grantSub      // the classic grant channel's subscription
	wanted   bool // the grant channel was asked for
	chans    map[string]*chanSub
	ops      []subOp
	opKick   chan struct{} // wakes the sender (buffered 1)
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup

	shardMode int            // grants on shard channels (shard.go): 1 yes, -1 no, 0 not known yet
	shards    map[int]*shard // by slot
	shardIdle time.Duration
}

type subOp struct {
	subscribe bool
	channel   string
}

// chanSub is a listened-to channel.
type chanSub struct {
	listeners  map[*listener]struct{}
	subscribed bool // SUBSCRIBE sent, no UNSUBSCRIBE since
	pending    int  // SUBSCRIBEs sent and not yet confirmed
	confirmed  bool // Redis confirmed the current subscription
}

// A listener hears of the messages on one channel.
type listener struct {
	events chan struct{} // buffered 1: a message came, or some may have been missed
	ready  chan struct{} // closed once the subscription is confirmed
	isSet  bool          // ready is closed
}

func newHub(rdb redis.UniversalClient, eng *engine, prefix string) *hub {
	id := newOwnerID()
	return &hub{
		rdb: rdb, eng: eng, channel: prefix + "grant:" + id, prefix: prefix, id: id,
		grantSub: newGrantSub(), chans: make(map[string]*chanSub),
		opKick: make(chan struct{}, 1), stop: make(chan struct{}),
		shards: make(map[int]*shard), shardIdle: shardIdle,
	}
}

// start creates the connection and its two goroutines: one sends SUBSCRIBE
// and UNSUBSCRIBE (so no caller blocks on the network while holding h.mu),
// one receives. h.mu is held.
func (h *hub) start() {
	if h.ps != nil || h.closed {
		return
	}
	h.ps = h.rdb.Subscribe(context.Background()) // no channel yet: nothing is sent
	h.wg.Add(2)
	go h.sender()
	go h.receiver()
}

func (h *hub) send(op subOp) {
	h.ops = append(h.ops, op)
	signal(h.opKick)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// subscribe starts subscribing to the grant channel if that has not begun,
// and returns a channel closed once grants can reach this Client (or
// subscribing failed, see failure).
func (h *hub) subscribe() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.wanted && !h.closed {
		h.wanted = true
		h.start()
		h.send(subOp{subscribe: true, channel: h.channel})
	}
	return h.ready
}

// failure returns why subscribing to the grant channel failed, or nil.
func (h *hub) failure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// listen subscribes to channel for a new listener, and returns it with a
// function that ends the listening. It returns nil if the hub is closed.
func (h *hub) listen(channel string) (*listener, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, func() {}
	}
	h.start()
	cs := h.chans[channel]
	if cs == nil {
		cs = &chanSub{listeners: make(map[*listener]struct{})}
		h.chans[channel] = cs
	}
	if !cs.subscribed {
		cs.subscribed, cs.confirmed = true, false
		cs.pending++
		h.send(subOp{subscribe: true, channel: channel})
	}
	l := &listener{events: make(chan struct{}, 1), ready: make(chan struct{})}
	if cs.confirmed {
		l.isSet = true
		close(l.ready)
	}
	cs.listeners[l] = struct{}{}
	return l, func() { h.unlisten(channel, l) }
}

func (h *hub) unlisten(channel string, l *listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.chans[channel]
	if cs == nil {
		return
	}
	delete(cs.listeners, l)
	if len(cs.listeners) == 0 && cs.subscribed && !h.closed {
		cs.subscribed, cs.confirmed = false, false
		h.send(subOp{subscribe: false, channel: channel})
		if cs.pending == 0 {
			delete(h.chans, channel)
		}
	}
}

func (h *hub) sender() {
	defer h.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
			// A failed write is retried by go-redis when the receiver
			// reconnects: it resubscribes every channel it knows.
			if op.subscribe {
				_ = h.ps.Subscribe(ctx, op.channel)
			} else {
				_ = h.ps.Unsubscribe(ctx, op.channel)
			}
		}
	}
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
			} else {
				h.disconnected()
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
			if m.Channel == h.channel {
				h.deliver(m.Payload)
			} else {
				h.message(m.Channel)
			}
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				break
			}
			if m.Channel == h.channel {
				h.confirmed()
			} else {
				h.confirmedChannel(m.Channel)
			}
		}
	}
}

// confirmed handles Redis's confirmation of the grant channel: the first
// lets waiters queue; a later one follows a reconnection, during which
// grants may have been missed.
func (h *hub) confirmed() {
	h.mu.Lock()
	first := h.markConfirmed()
	h.mu.Unlock()
	if !first {
		h.eng.pollWaiting()
	}
}

// confirmedChannel handles the confirmation of a listened-to channel.
func (h *hub) confirmedChannel(channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.chans[channel]
	if cs == nil {
		return
	}
	if cs.pending > 0 {
		cs.pending--
	}
	switch {
	case cs.pending > 0:
		// An older SUBSCRIBE's confirmation; ours is still to come.
	case !cs.subscribed:
		if len(cs.listeners) == 0 {
			delete(h.chans, channel)
		}
	case !cs.confirmed:
		cs.confirmed = true
		for l := range cs.listeners {
			if !l.isSet {
				l.isSet = true
				close(l.ready)
			}
		}
	default:
		// Resubscribed after a reconnection: messages may have been missed.
		for l := range cs.listeners {
			signal(l.events)
		}
	}
}

// message tells the listeners of channel that a message came.
func (h *hub) message(channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cs := h.chans[channel]; cs != nil {
		for l := range cs.listeners {
			signal(l.events)
		}
	}
}

// disconnected forgets outstanding confirmations: go-redis resubscribes
// every channel on the new connection, and each gets one confirmation.
func (h *hub) disconnected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch, cs := range h.chans {
		cs.pending = 0
		if !cs.subscribed && len(cs.listeners) == 0 {
			delete(h.chans, ch)
		}
	}
}

// fail records that subscribing to the grant channel failed with err.
func (h *hub) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wanted {
		h.markFailed(err)
	}
}

// grantSub is where the subscription to a grant channel stands: the
// Client's classic one (hub) or a slot's shard channel (shard). Guarded by
// the hub's mutex.
type grantSub struct {
	ready chan struct{} // closed once confirmed, or subscribing failed
	err   error         // why subscribing failed
	seen  bool          // the first confirmation came
}

func newGrantSub() grantSub { return grantSub{ready: make(chan struct{})} }

// markConfirmed records a confirmation of the subscription and reports
// whether it was the first: that one lets waiters queue; a later one
// follows a reconnection (or a move), during which grants may have been
// missed.
func (g *grantSub) markConfirmed() (first bool) {
	first = !g.seen
	g.seen = true
	if first && g.err == nil {
		close(g.ready)
	}
	return first
}

// markFailed records that subscribing failed with err, unless the
// subscription was confirmed before.
func (g *grantSub) markFailed(err error) {
	if g.err == nil && !g.seen {
		g.err = err
		close(g.ready)
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
	h.eng.granted(id, token)
}

// close ends the connection and its goroutines.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	ps := h.ps
	h.mu.Unlock()
	close(h.stop)
	if ps != nil {
		_ = ps.Close()
	}
	h.closeShards()
	h.wg.Wait()
}
