package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// leastPrivilege points at the ACL a renewlock user needs.
const leastPrivilege = `The renewlock README, section "Least privilege", lists the commands, keys and channels a renewlock user needs.`

// replyPrefix returns the first word of err's Redis error reply (NOPERM,
// WRONGPASS, …), or "" if err holds no error reply.
func replyPrefix(err error) string {
	var re redis.Error
	if !errors.As(err, &re) {
		return ""
	}
	msg := re.Error()
	if i := strings.IndexByte(msg, ' '); i > 0 {
		return msg[:i]
	}
	return msg
}

// isAuthFailure reports whether err is a failed authentication.
func isAuthFailure(err error) bool {
	p := replyPrefix(err)
	return p == "WRONGPASS" || p == "NOAUTH"
}

// isPermission reports whether Redis refused for lack of rights: the
// library says so (renewlock.ErrPermission), or the reply is an ACL denial
// or an authentication failure (as on the initial PING, which does not go
// through the library).
func isPermission(err error) bool {
	return errors.Is(err, renewlock.ErrPermission) || isAuthFailure(err) || replyPrefix(err) == "NOPERM"
}

// redisFailure turns err, a failure of what (e.g. "status KEY") at target,
// into renewlock's exit: ExitNoPerm for a permission problem, ExitConfig
// for another error Redis returned that retrying cannot fix, and
// ExitUnavailable for the rest (unreachable, timeouts, transient replies).
// Messages never show the password.
func redisFailure(what string, target RedisTarget, err error) error {
	where := fmt.Sprintf("Redis at %s (from %s)", target.Redacted(), target.Source)
	switch {
	case isPermission(err):
		user := "default"
		if o, oerr := target.Options(); oerr == nil && o.Username != "" {
			user = o.Username
		}
		reply := redactErr(err, target)
		var re redis.Error
		if errors.As(err, &re) {
			reply = redactErr(re, target) // Redis's own words, without the library's
		}
		hint := leastPrivilege
		if isAuthFailure(err) {
			hint = "Check the user name and password in the URL. " + hint
		}
		return exitf(ExitNoPerm, "%s: permission problem: %s refused user %q: %s. %s",
			what, where, user, strings.TrimRight(reply, ". "), hint)
	case errors.Is(err, renewlock.ErrRejected):
		// The library quotes Redis and says what to fix.
		msg := libErr(err)
		if _, after, ok := strings.Cut(msg, "rejected by Redis: "); ok {
			msg = after
		}
		return exitf(ExitConfig, "%s: rejected by %s, and retrying cannot fix it: %s", what, where, redactMsg(msg, target))
	}
	return exitf(ExitUnavailable, "%s: %s is unavailable: %s", what, where, redactErr(err, target))
}

// redactMsg hides the target's password in msg.
func redactMsg(msg string, target RedisTarget) string {
	if pw := urlPassword(target.URL); pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}
