// Package outcome sorts the error of an acquisition or a release into a
// small, fixed set of outcomes, the values of the outcome label (Prometheus)
// and attribute (OpenTelemetry). The set is bounded whatever the error says,
// so it is safe as a metric dimension.
package outcome

import (
	"context"
	"errors"

	"github.com/renewlock/renewlock"
)

// An Outcome is how an acquisition or a release ended.
type Outcome uint8

// The outcomes. NotAcquired happens to acquisitions only, Lost to releases
// only.
const (
	OK          Outcome = iota // acquired, or released
	NotAcquired                // TryAcquire found the lock held (ErrNotAcquired)
	Lost                       // the lease had been lost before the release (ErrLeaseLost)
	Canceled                   // the caller's context was cancelled
	Deadline                   // the caller's context's deadline passed
	Permission                 // Redis refused for lack of rights (ErrPermission)
	Rejected                   // Redis refused for another reason retrying cannot fix (ErrRejected)
	Closed                     // the Client was closed (ErrClientClosed)
	Error                      // anything else: Redis unreachable, a timeout of go-redis, …
	Count                      // the number of outcomes
)

var names = [Count]string{"ok", "not_acquired", "lost", "canceled", "deadline", "permission", "rejected", "closed", "error"}

// String returns the label value: "ok", "not_acquired", "lost", "canceled",
// "deadline", "permission", "rejected", "closed" or "error".
func (o Outcome) String() string {
	if o < Count {
		return names[o]
	}
	return "error"
}

// Acquire returns the outcome of an acquisition that returned err. It does
// not allocate.
func Acquire(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, renewlock.ErrNotAcquired):
		return NotAcquired
	}
	return failure(err)
}

// Release returns the outcome of a Release that returned err. A release
// that found the lease lost is Lost even if the release itself failed too
// (Release joins both errors): the work under the lock may not have been
// exclusive, which is what matters most.
func Release(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, renewlock.ErrLeaseLost):
		return Lost
	}
	return failure(err)
}

func failure(err error) Outcome {
	switch {
	case errors.Is(err, renewlock.ErrClientClosed):
		return Closed
	case errors.Is(err, renewlock.ErrPermission): // wraps ErrRejected too
		return Permission
	case errors.Is(err, renewlock.ErrRejected):
		return Rejected
	case errors.Is(err, context.DeadlineExceeded):
		return Deadline
	case errors.Is(err, context.Canceled):
		return Canceled
	}
	return Error
}

// AcquireOutcomes lists the outcomes an acquisition can have, in order.
var AcquireOutcomes = []Outcome{OK, NotAcquired, Canceled, Deadline, Permission, Rejected, Closed, Error}

// ReleaseOutcomes lists the outcomes a release can have, in order.
var ReleaseOutcomes = []Outcome{OK, Lost, Canceled, Deadline, Permission, Rejected, Closed, Error}

// Causes lists the causes of a lease loss, in order.
var Causes = []renewlock.LossCause{renewlock.LossNotOwner, renewlock.LossDeadline, renewlock.LossRejected}
