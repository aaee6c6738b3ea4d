package renewlock

import (
	"context"
	"time"
)

// An Observer is told what a Client does, for metrics, logs and traces; the
// module github.com/renewlock/renewlock/observe plugs it into Prometheus and
// OpenTelemetry. Set it with WithObserver. Every field is optional, and an
// Observer that is not set costs nothing. The functions are called
// synchronously from the goroutine that did the work (Acquired and Released
// from the caller's), so they must be quick, must not block, and must not
// call the Client.
type Observer struct {
	// Acquired is called when an acquisition ends — by any primitive:
	// Acquire, TryAcquire, Do, AcquirePermit, AcquireRead, Campaign, … —
	// whatever its outcome. Calls refused before they start (invalid
	// arguments, a closed Client, a context already done) are not seen.
	Acquired func(AcquireEvent)
	// Renewed is called after each renewal round trip of the Client's
	// loop, which renews held locks and waiters' places together.
	Renewed func(RenewEvent)
	// Lost is called when a held lock's lease is lost, right after Done
	// closes with an error wrapping ErrLeaseLost.
	Lost func(LostEvent)
	// Released is called when a Release ends (also Do's, Resign, Lead's),
	// whatever its outcome, and for each lock Close releases (ByClose).
	Released func(ReleaseEvent)
}

// AcquireEvent describes one acquisition.
type AcquireEvent struct {
	Ctx      context.Context // the caller's context, for tracing
	Key      string
	Start    time.Time     // when the call began
	Duration time.Duration // how long the call took, waiting included
	Queued   bool          // it waited in the lock's queue
	Token    uint64        // the fencing token; 0 unless acquired
	Err      error         // nil when acquired
}

// RenewEvent describes one renewal round trip.
type RenewEvent struct {
	Leases int           // held locks and waiters' places renewed in it
	Failed int           // of those, how many failed for now (retried)
	Lost   int           // of those, how many locks were found lost
	RTT    time.Duration // from sending to the reply
	Err    error         // the first failure, if any
}

// LostEvent describes the loss of a lease.
type LostEvent struct {
	Key   string
	Token uint64
	Cause LossCause
	Err   error         // what Lock.Err returns
	Held  time.Duration // from acquisition to the loss
}

// A LossCause says why a lease was lost.
type LossCause uint8

const (
	// LossNotOwner: a renewal or the release found another owner or no key.
	LossNotOwner LossCause = iota + 1
	// LossDeadline: renewals kept failing until the validity deadline.
	LossDeadline
	// LossRejected: Redis refused the renewal for a reason retrying cannot
	// fix (ErrRejected), such as an ACL change.
	LossRejected
)

// String returns a short name of the cause, for labels and logs.
func (c LossCause) String() string {
	switch c {
	case LossNotOwner:
		return "not_owner"
	case LossDeadline:
		return "deadline"
	case LossRejected:
		return "rejected"
	}
	return "unknown"
}

// ReleaseEvent describes one Release.
type ReleaseEvent struct {
	Ctx       context.Context // the caller's context, for tracing (Background for Close)
	Key       string
	Token     uint64
	Start     time.Time     // when the release began
	Duration  time.Duration // how long it took
	Held      time.Duration // from acquisition to the release
	HandedOff bool          // the lock went straight to the next waiter
	ByClose   bool          // released by Client.Close
	Err       error         // what Release returned; for Close, its release's error
}

// WithObserver sets the Observer told of acquisitions, renewals, losses
// and releases. Default: none. Given to New, it sees everything the Client
// does; given to one call, it sees that call's acquisition, and the loss
// and release of its lock (renewal round trips go to the Client's).
func WithObserver(o *Observer) Option {
	return func(c *config) { c.observer = o }
}

// Stats is a snapshot of a Client's leases.
type Stats struct {
	Held    int // locks held (Release under way included)
	Waiting int // Acquire calls waiting for a lock
}

// Stats returns how many locks the Client holds and how many of its Acquire
// calls wait, at this moment.
func (c *Client) Stats() Stats {
	var s Stats
	c.eng.mu.Lock()
	defer c.eng.mu.Unlock()
	for le := range c.eng.leases {
		switch le.state {
		case leaseHeld, leaseReleasing:
			s.Held++
		case leaseWaiting:
			s.Waiting++
		}
	}
	for _, le := range c.eng.byID {
		if le.state == leasePending {
			s.Waiting++
		}
	}
	return s
}
