// Package bridge lets the packages of this module that are built on the
// renewlock engine (Redlock) reach what they need of it without adding to
// renewlock's public API. The root package fills the variables in an init
// function (bridge.go there); they are set before any importer of renewlock
// runs.
package bridge

import (
	"log/slog"
	"time"
)

// Settings are the options in force for one acquisition: a Client's
// defaults with per-call options applied, validated.
type Settings struct {
	TTL      time.Duration // lease length
	Interval time.Duration // renew interval
	Validity time.Duration // TTL·(1 − drift) − safety margin
	Prefix   string        // key prefix in Redis
	Logger   *slog.Logger
}

var (
	// LockOwner returns the Redis key and the owner id of a
	// *renewlock.Lock.
	LockOwner func(lock any) (rkey, owner string)

	// Resolve returns the settings of a *renewlock.Client with opts (a
	// []renewlock.Option) applied, or an error wrapping ErrInvalidArgument
	// that names the bad value.
	Resolve func(client any, opts any) (Settings, error)

	// Classify sorts an error of a Redis call about the Redis key rkey as
	// renewlock does: an error retrying cannot fix wraps ErrRejected (and
	// ErrPermission for rights); a transient one is returned unchanged.
	Classify func(err error, rkey string) error
)
