package renewlock

import (
	"context"
	_ "embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Every operation is one Lua script, loaded once and called by SHA
// (EVALSHA, with EVAL as the fallback after NOSCRIPT). Each script is
// lib.lua, the rules about a lock's state that every script shares,
// followed by its own part. A script touches one key per lock, so all of a
// lock's state, its queue included, is in one hash slot.
var (
	//go:embed scripts/lib.lua
	libSrc string
	//go:embed scripts/shared.lua
	sharedSrc string
	//go:embed scripts/acquire.lua
	acquireSrc string
	//go:embed scripts/renew.lua
	renewSrc string
	//go:embed scripts/release.lua
	releaseSrc string
	//go:embed scripts/shared_acquire.lua
	sharedAcquireSrc string
	//go:embed scripts/shared_release.lua
	sharedReleaseSrc string
	//go:embed scripts/force_release.lua
	forceReleaseSrc string
	//go:embed scripts/inspect.lua
	inspectSrc string

	// Exclusive locks (mutex, election): lib.lua only, so that their hot
	// path pays for nothing else.
	acquireScript = newScript(libSrc, acquireSrc)
	releaseScript = newScript(libSrc, releaseSrc)
	inspectScript = newScript(libSrc, inspectSrc)
	// Shared locks (semaphore, read-write lock), and the scripts that
	// handle every kind.
	sharedAcquireScript = newScript(libSrc, sharedSrc, sharedAcquireSrc)
	sharedReleaseScript = newScript(libSrc, sharedSrc, sharedReleaseSrc)
	renewScript         = newScript(libSrc, sharedSrc, renewSrc)
	forceReleaseScript  = newScript(libSrc, sharedSrc, forceReleaseSrc)
)

func newScript(parts ...string) *redis.Script { return redis.NewScript(strings.Join(parts, "\n")) }

// evalPipelined runs n script calls in one pipeline, by SHA; the calls that
// got NOSCRIPT (a flushed or restarted Redis) go again by source, which also
// loads the script. call(i) describes the i-th call.
func evalPipelined(ctx context.Context, rdb redis.UniversalClient, n int,
	call func(i int) (*redis.Script, []string, []any)) []*redis.Cmd {
	cmds := make([]*redis.Cmd, n)
	pipe := rdb.Pipeline()
	for i := range cmds {
		script, keys, args := call(i)
		cmds[i] = script.EvalSha(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		failUnset(cmds, err)
	}
	var retry []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		pipe := rdb.Pipeline()
		for _, i := range retry {
			script, keys, args := call(i)
			cmds[i] = script.Eval(ctx, pipe, keys, args...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			failUnset(cmds, err)
		}
	}
	return cmds
}

// failUnset gives err to the commands of a failed pipeline that have
// neither an error nor a reply (go-redis leaves them so when the
// connection itself failed, e.g. at login).
func failUnset(cmds []*redis.Cmd, err error) {
	for _, cmd := range cmds {
		if cmd.Err() == nil && cmd.Val() == nil {
			cmd.SetErr(err)
		}
	}
}
