package renewlock

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// Every operation is one Lua script, loaded once and called by SHA
// (EVALSHA, with EVAL as the fallback after NOSCRIPT). Each touches exactly
// one key per lock, so all of a lock's state is in one hash slot.
var (
	//go:embed scripts/acquire.lua
	acquireSrc string
	//go:embed scripts/renew.lua
	renewSrc string
	//go:embed scripts/release.lua
	releaseSrc string
	//go:embed scripts/force_release.lua
	forceReleaseSrc string

	acquireScript      = redis.NewScript(acquireSrc)
	renewScript        = redis.NewScript(renewSrc)
	releaseScript      = redis.NewScript(releaseSrc)
	forceReleaseScript = redis.NewScript(forceReleaseSrc)
)

// Fields of the lock hash.
const (
	fieldOwner    = "o"
	fieldToken    = "t"
	fieldHolder   = "h"
	fieldAcquired = "a"
)
