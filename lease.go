package renewlock

import (
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The lease engine. Everything this Client has in Redis that must be
// renewed to last is a lease: a held lock, or a waiter's place in a lock's
// queue (a crashed waiter is skipped by the server once its lease ends). The
// engine keeps them, renews them in batches (renew.go), hands a waiter the
// lock when it is granted (handoff.go), and tells the lock when its lease is
// lost. It knows leases, not the primitives built on them: the mutex (Lock)
// sees only a *lease and the events it gets.
//
// One mutex, engine.mu, guards every lease's state, so that a grant, a
// renewal's reply, a give-up and Close never see a lease half changed.
//
// A lease's life:
//
//	pending ──reply "queued"──▶ waiting ──granted──▶ held ──Release──▶ releasing ──▶ (gone)
//	   │  └─reply "taken"──────────────────────────────▲                     │
//	   └─◀──renewal "gone" (queue lost: retry)──┘        └─lost, Close──▶ (gone)
//
// pending: an acquire attempt is on its way; its id is known to the engine
// already, so a grant that arrives before the attempt's reply (pub/sub can
// overtake it) is kept for it.
type leaseState uint8

const (
	leasePending   leaseState = iota // attempt on the wire; not renewed
	leaseWaiting                     // queued: renewed so the entry lasts
	leaseHeld                        // the lock: renewed, deadline watched
	leaseReleasing                   // Release under way: deadline watched only
	leaseGone                        // forgotten
)

// A lockKind is what sets the primitives on the engine apart: the scripts
// that take and give back a lease, and what they are told. Everything else
// — renewal, the queue, grants, loss, Close — is the engine's, the same for
// all.
type lockKind struct {
	name   string // for messages
	code   string // the kind in Redis: "" mutex, "e" election, "s" semaphore, "r" read-write lock
	shared bool   // many holders, each with its own lease (shared.lua)
}

// kindArgs is what a lease of a kind other than the mutex tells its
// scripts.
type kindArgs struct {
	mode   string // shared kinds: "s" a shared share (permit, read), "x" exclusive (write)
	limit  int    // a semaphore's limit
	value  string // an election: the candidate's value
	notify string // an election: the channel on which changes are announced
}

var (
	kindMutex     = &lockKind{name: "mutex"}
	kindElection  = &lockKind{name: "election", code: "e"}
	kindSemaphore = &lockKind{name: "semaphore", code: "s", shared: true}
	kindRWLock    = &lockKind{name: "read-write lock", code: "r", shared: true}
)

// release returns the script that releases a lease of this kind (or
// leaves its queue).
func (k *lockKind) release() *redis.Script {
	if k.shared {
		return sharedReleaseScript
	}
	return releaseScript
}

type lease struct {
	rkey   string         // the Redis key
	id     string         // owner id in Redis; also the waiter's id in the queue
	cfg    *config        // TTL, renew interval, logger
	kind   *lockKind      // what it is a lease of
	args   *kindArgs      // what the kind's scripts are told besides; nil for a mutex
	lock   *Lock          // the lock it is (or will be, once granted)
	events chan waitEvent // made when it joins a queue
	joins  int            // attempts made to join the queue (owned by the acquiring goroutine)

	// Guarded by engine.mu.
	state     leaseState
	token     uint64    // set when held; while pending, a grant that overtook the attempt's reply
	nextRenew time.Time // when the next renewal is due
	deadline  time.Time // held: validity deadline, on the monotonic clock
	retryAt   time.Time // after a failed renewal: not before this
	inflight  bool      // a renewal is on the wire
	sent      bool      // an attempt was sent: Redis may have something of it
	// base is when the last reply that found the waiter queued was sent. A
	// grant lands after that reply was made, so the granted lease ends no
	// earlier than base + TTL: the new holder's deadline counts from base.
	base time.Time
	// rejoined: the waiter may have had an earlier entry in the queue: it
	// tried to join more than once (as one whose entry was lost does
	// before it is queued again). Copied from joins by queued. A grant
	// told by pub/sub or by a release's reply may then be about that entry
	// (a late message), and base about the new one: such a grant is only a
	// hint, confirmed by a renewal before the lock is handed out.
	rejoined bool
}

// A waitEvent tells a waiting Acquire what became of its place in the queue.
type waitEvent struct {
	kind waitKind
	err  error // waitFailed: why
}

type waitKind uint8

const (
	waitGranted waitKind = iota + 1 // the lock is ours: lease.lock is held
	waitGone                        // the queue entry is gone: try again
	waitFailed                      // Redis refused the entry's renewal
)

type engine struct {
	c *Client

	mu     sync.Mutex
	leases map[*lease]struct{} // renewed or watched by the loop
	byID   map[string]*lease   // pending and waiting leases, for grants
	closed bool                // drained by Close: nothing new is taken on
	loop   renewLoop           // renew.go
}

func newEngine(c *Client) *engine {
	e := &engine{
		c:      c,
		leases: make(map[*lease]struct{}),
		byID:   make(map[string]*lease),
	}
	e.loop.init()
	go e.run()
	return e
}

// newLease returns a lease of kind for one acquisition of key, with its
// Lock.
func (e *engine) newLease(kind *lockKind, key string, cfg *config) *lease {
	le := &lease{rkey: cfg.prefix + key, id: newOwnerID(), cfg: cfg, kind: kind}
	le.lock = &Lock{c: e.c, key: key, le: le, done: make(chan struct{})}
	return le
}

// expect registers le before its attempt is sent, so that a grant arriving
// first is not lost. It returns false if the Client is closing.
func (e *engine) expect(le *lease) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	le.state, le.sent = leasePending, true
	e.byID[le.id] = le
	return true
}

// Outcomes of hold.
type holdResult uint8

const (
	holdOK     holdResult = iota
	holdClosed            // the Client is closing: the caller cleans up
	holdStale             // the reply came after the deadline it set: ask again
)

// hold makes le the lock's lease after an attempt sent at sent took it (or
// found it ours already). A reply that arrives after the validity deadline
// it gives (Redis or the network stalled longer than the lease) cannot be
// handed out: the caller asks again with the same id, which renews the
// lock from a fresh send time.
func (e *engine) hold(le *lease, token uint64, sent time.Time) holdResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		delete(e.byID, le.id)
		le.state = leaseGone
		return holdClosed
	}
	if !time.Now().Before(sent.Add(le.cfg.validity())) {
		return holdStale
	}
	delete(e.byID, le.id)
	e.toHeld(le, token, sent)
	return holdOK
}

// toHeld makes le held with a lease that Redis started no earlier than
// base. e.mu is held.
func (e *engine) toHeld(le *lease, token uint64, base time.Time) {
	le.state, le.token = leaseHeld, token
	le.lock.token = token
	le.deadline = base.Add(le.cfg.validity())
	le.nextRenew = base.Add(le.cfg.interval())
	le.retryAt = time.Time{}
	e.leases[le] = struct{}{}
	e.alarm(le.nextRenew)
}

// queued records that the attempt sent at sent put le in the queue, with
// left of the holder's lease to run; first says it heads the queue. A grant
// that overtook the reply is handed over now. It returns false if the Client
// is closing.
func (e *engine) queued(le *lease, sent time.Time, left time.Duration, first bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		delete(e.byID, le.id)
		le.state = leaseGone
		return false
	}
	le.state, le.base = leaseWaiting, sent
	le.rejoined = le.joins > 1
	e.leases[le] = struct{}{}
	if le.token != 0 { // a grant came first
		token := le.token
		le.token = 0
		e.grantLocked(le, token, false)
		return true
	}
	e.scheduleWait(le, sent, time.Now(), left, first)
	return true
}

// scheduleWait sets when waiting le is renewed next: every renew interval,
// and the head of the queue also right after the holder's lease would end,
// so that a crashed holder's lock passes on at once. e.mu is held.
func (e *engine) scheduleWait(le *lease, sent, now time.Time, left time.Duration, first bool) {
	le.nextRenew = sent.Add(le.cfg.interval())
	if first {
		if t := now.Add(left + time.Millisecond); t.Before(le.nextRenew) {
			le.nextRenew = t
		}
	}
	le.retryAt = time.Time{}
	e.alarm(le.nextRenew)
}

// grantLocked hands waiting le the lock, granted with token. confirmed says
// the grant was read by a renewal of le (acknowledged by the replicas
// WithReplicaAck asks for). If the last sign of life of its queue entry
// (base) is too old to build a deadline on, or the grant still needs its
// replicas' acknowledgement, or it may be a late grant of an earlier entry
// of this waiter (rejoined), the lock is renewed first: the renewal's reply
// grants it again with a fresh base — or finds the waiter still queued.
// e.mu is held.
//
// Why rejoined needs this: the waiter's entry is lost (the holder's lease
// ended, and Redis dropped the key, queue and all) just after a release
// granted it the lock; its next renewal finds it gone, it joins the queue
// again behind a new holder, with the same id, and base is then the send
// time of that join. The grant's message, held up on a slow link, arrives
// now: taken at its word it would hand out a lock that another client
// holds (TestLateGrantOfALostQueueEntry; the chaos suite's latency-jitter
// scenario saw overlaps of up to 330 ms). A waiter that joined once has
// had no other entry, so a grant can only be about the one it has.
func (e *engine) grantLocked(le *lease, token uint64, confirmed bool) {
	if !time.Now().Before(le.base.Add(le.cfg.validity())) || (!confirmed && (le.rejoined || le.cfg.replicas > 0)) {
		le.nextRenew = time.Now()
		e.alarm(le.nextRenew)
		return
	}
	delete(e.byID, le.id)
	e.toHeld(le, token, le.base)
	signalEvent(le.events, waitEvent{kind: waitGranted})
}

// granted hands the lock to this Client's waiter id, which Redis made its
// holder with token: told by pub/sub or by a release's reply. A waiter that
// gave up is no longer known; its own clean-up releases what it was
// granted.
//
// The granted lease ends where the waiter's place would have: one TTL
// after Redis ran the last renewal (or the enqueue) that found it queued.
// So the new holder's deadline counts from that call's send time (base),
// never from a later moment such as the send time of the release that
// granted it.
func (e *engine) granted(id string, token uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	le := e.byID[id]
	if le == nil {
		return
	}
	switch le.state {
	case leasePending:
		le.token = token // kept for the attempt's reply (queued)
	case leaseWaiting:
		e.grantLocked(le, token, false)
	}
}

// gone handles a queue entry that Redis no longer has (restart, flush, its
// lease ran out): the waiter tries again with the same id. e.mu is held.
func (e *engine) goneLocked(le *lease) {
	delete(e.leases, le)
	le.state = leasePending
	signalEvent(le.events, waitEvent{kind: waitGone})
}

// withdraw forgets le (its Acquire gives up). It reports whether Redis may
// hold something of it (an entry, or the lock granted meanwhile), which
// the caller must then clean up.
func (e *engine) withdraw(le *lease) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.byID, le.id)
	delete(e.leases, le)
	le.state = leaseGone
	return le.sent
}

// releasing stops renewing le but keeps watching its validity deadline,
// until remove. A renewal already on the wire may still land; it is
// owner-checked, so it cannot revive a released lock.
func (e *engine) releasing(le *lease) {
	e.mu.Lock()
	if le.state == leaseHeld {
		le.state = leaseReleasing
	}
	e.mu.Unlock()
}

// remove forgets le.
func (e *engine) remove(le *lease) {
	e.mu.Lock()
	delete(e.leases, le)
	delete(e.byID, le.id)
	le.state = leaseGone
	e.mu.Unlock()
}

// drain forgets every lease and makes the engine refuse new ones. It
// returns the held leases, those being released, and the waiting ones.
func (e *engine) drain() (held, releasing, waiting []*lease) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for le := range e.leases {
		switch le.state {
		case leaseHeld:
			held = append(held, le)
		case leaseReleasing:
			releasing = append(releasing, le)
		case leaseWaiting:
			waiting = append(waiting, le)
		}
		le.state = leaseGone
	}
	clear(e.leases)
	clear(e.byID)
	return held, releasing, waiting
}

// pollWaiting renews every waiting lease at once: grants published while
// the subscription was down are then found by the renewals' replies.
func (e *engine) pollWaiting() {
	e.mu.Lock()
	now := time.Now()
	for le := range e.leases {
		if le.state == leaseWaiting {
			le.nextRenew, le.retryAt = now, time.Time{}
		}
	}
	e.alarm(now)
	e.mu.Unlock()
}

// signalEvent delivers ev without blocking: a lease has at most one event
// outstanding, since each moves it to a state that sends no more until its
// waiter acts.
func signalEvent(ch chan waitEvent, ev waitEvent) {
	if ch == nil {
		return
	}
	select {
	case ch <- ev:
	default:
	}
}
