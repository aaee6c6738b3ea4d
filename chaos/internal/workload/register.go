package workload

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// registerScript is the fenced resource: it accepts a write iff its token is
// at least the largest token it has accepted, and appends every decision to
// a log, which is the resource's own serial order and the ground truth for
// writes whose reply never arrived (a SIGKILLed worker).
//
// Tokens are compared as decimal strings (length, then bytes) so no uint64
// passes through Lua's doubles.
var registerScript = redis.NewScript(`
local max = redis.call('GET', KEYS[1])
local tok = ARGV[1]
local stale = max and (#tok < #max or (#tok == #max and tok < max))
if stale then
  redis.call('RPUSH', KEYS[2], 'R ' .. ARGV[2] .. ' ' .. tok)
  return 0
end
redis.call('SET', KEYS[1], tok)
redis.call('RPUSH', KEYS[2], 'A ' .. ARGV[2] .. ' ' .. tok)
return 1
`)

// Register is a fenced register per lock key, kept in a Redis server that
// is never subjected to faults (it stands for the protected resource, e.g. a
// database that checks fencing tokens).
type Register struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRegister returns a register stored in rdb under prefix.
func NewRegister(rdb redis.UniversalClient, prefix string) *Register {
	return &Register{rdb: rdb, prefix: prefix}
}

func (r *Register) keys(key string) []string {
	return []string{r.prefix + "max:" + key, r.prefix + "log:" + key}
}

// rwScript is a read-write lock's fenced resource: a write ('w') is
// accepted iff its token is ≥ every token the resource has seen, reads
// included (a writer's token is above every earlier token, readers'
// included, so a valid writer is never refused); a read ('r') is accepted
// iff its token is ≥ the largest accepted write's (a valid reader came
// after every earlier writer). Every decision is logged with its operation.
var rwScript = redis.NewScript(`
local function less(a, b) return #a < #b or (#a == #b and a < b) end
local op, tok = ARGV[1], ARGV[2]
local bound = redis.call('GET', op == 'w' and KEYS[3] or KEYS[1])
if bound and less(tok, bound) then
  redis.call('RPUSH', KEYS[2], 'R ' .. ARGV[3] .. ' ' .. tok .. ' ' .. op)
  return 0
end
if op == 'w' then
  redis.call('SET', KEYS[1], tok)
end
local all = redis.call('GET', KEYS[3])
if not all or less(all, tok) then
  redis.call('SET', KEYS[3], tok)
end
redis.call('RPUSH', KEYS[2], 'A ' .. ARGV[3] .. ' ' .. tok .. ' ' .. op)
return 1
`)

// RW offers a read-write lock's resource key a write (op "w") or a read
// (op "r") carrying token; it reports whether the resource accepted it.
func (r *Register) RW(ctx context.Context, key, op string, token uint64, wid string) (bool, error) {
	keys := append(r.keys(key), r.prefix+"all:"+key)
	n, err := rwScript.Run(ctx, r.rdb, keys, op, strconv.FormatUint(token, 10), wid).Int64()
	if err != nil {
		return false, fmt.Errorf("register %s %s (token %d): %w", op, wid, token, err)
	}
	return n == 1, nil
}

// Write offers a write carrying token for key; wid names the write in the
// log. It reports whether the register accepted it.
func (r *Register) Write(ctx context.Context, key string, token uint64, wid string) (bool, error) {
	n, err := registerScript.Run(ctx, r.rdb, r.keys(key), strconv.FormatUint(token, 10), wid).Int64()
	if err != nil {
		return false, fmt.Errorf("register write %s (token %d): %w", wid, token, err)
	}
	return n == 1, nil
}

// LogEntry is one decision of the register, in its serial order.
type LogEntry struct {
	Seq      int
	Accepted bool
	WID      string
	Token    uint64
	Op       string // a read-write lock's resource: "r" or "w"; "" for a register
}

// Log returns every decision the register made for key, in order.
func (r *Register) Log(ctx context.Context, key string) ([]LogEntry, error) {
	lines, err := r.rdb.LRange(ctx, r.keys(key)[1], 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("reading register log of %q: %w", key, err)
	}
	out := make([]LogEntry, 0, len(lines))
	for i, line := range lines {
		f := strings.Fields(line)
		if (len(f) != 3 && len(f) != 4) || (f[0] != "A" && f[0] != "R") {
			return nil, fmt.Errorf("register log of %q: bad entry %d: %q", key, i, line)
		}
		tok, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("register log of %q: entry %d: token %q: %w", key, i, f[2], err)
		}
		en := LogEntry{Seq: i, Accepted: f[0] == "A", WID: f[1], Token: tok}
		if len(f) == 4 {
			en.Op = f[3]
		}
		out = append(out, en)
	}
	return out, nil
}
