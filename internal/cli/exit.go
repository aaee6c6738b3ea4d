// Package cli implements the renewlock command-line tool: resolving the
// Redis URL, running a command under a lock (supervising it, forwarding
// signals, killing it when the lease is lost), the operator commands
// status, list and release, and the demo. cmd/renewlock wires it to flags.
package cli

import (
	"errors"
	"fmt"
)

// Exit statuses of the renewlock tool. Besides these, run exits with the
// command's own status, or 128+N if the command died of signal N.
const (
	// ExitOK: success.
	ExitOK = 0
	// ExitNotHeld: status or release found the key not held.
	ExitNotHeld = 1
	// ExitUsage (EX_USAGE): bad flags, arguments or option values.
	ExitUsage = 64
	// ExitUnavailable (EX_UNAVAILABLE): Redis could not be reached, did not
	// answer in time, or answered with an error that heals by itself
	// (LOADING, BUSY, a failover).
	ExitUnavailable = 69
	// ExitSoftware (EX_SOFTWARE): an internal error of renewlock.
	ExitSoftware = 70
	// ExitNotAcquired (EX_TEMPFAIL): the lock was not acquired within
	// --wait, or at once with --no-wait.
	ExitNotAcquired = 75
	// ExitLeaseLost: the lease was lost while the command ran; the command
	// was sent SIGTERM, and SIGKILL after --grace.
	ExitLeaseLost = 76
	// ExitNoPerm (EX_NOPERM): Redis refused for lack of rights: the ACL
	// user may not run a command or touch a key or channel renewlock needs
	// (NOPERM), or authentication failed (WRONGPASS, NOAUTH).
	ExitNoPerm = 77
	// ExitConfig (EX_CONFIG): Redis rejected a command for another reason
	// that retrying cannot fix: a key that is not a lock where the lock
	// should be (WRONGTYPE), a script error.
	ExitConfig = 78
	// ExitCannotExecute: the command was found but could not be started.
	ExitCannotExecute = 126
	// ExitCommandNotFound: the command was not found.
	ExitCommandNotFound = 127
	// ExitSignalBase is added to a signal number: the command died of that
	// signal, or renewlock was interrupted by it while waiting for the lock.
	ExitSignalBase = 128
)

// ExitError carries the exit status of renewlock and the one-line reason
// printed on stderr ("renewlock: " + Msg). An empty Msg prints nothing: the
// status is the command's own.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// exitf returns an ExitError with a formatted message.
func exitf(code int, format string, args ...any) *ExitError {
	return &ExitError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Usagef returns a usage error (ExitUsage) with a formatted message.
func Usagef(format string, args ...any) error {
	return exitf(ExitUsage, format, args...)
}

// Code returns the exit status for err: ExitOK for nil, the code of an
// ExitError, and ExitUsage for any other error, because every runtime
// failure is reported as an ExitError and what is left comes from parsing
// the command line.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitUsage
}
