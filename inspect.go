package renewlock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Info describes the current holder of a key, as stored in Redis. It is a
// snapshot for operators: by the time it is read the holder may have
// released the key or lost its lease.
type Info struct {
	// Key is the user's key, without the Client's key prefix.
	Key string
	// Owner is the random owner id of the holder (32 hex characters). It is
	// a capability: anyone who knows it can renew or release the lease, so
	// tools should show only a prefix of it.
	Owner string
	// Token is the fencing token of the holder's acquisition.
	Token uint64
	// Holder is the free-form holder description (WithHolder; by default
	// "HOSTNAME:PID").
	Holder string
	// AcquiredAt is when the holder took the key, by the Redis server's
	// clock.
	AcquiredAt time.Time
	// TTL is what was left of the holder's lease when the key was read. The
	// holder renews it well before it runs out. It is zero in the Info
	// returned by ForceRelease.
	TTL time.Duration
	// Waiters is the number of places in the lock's queue: callers of
	// Acquire, in any client, waiting for the lock in arrival order. It
	// may count waiters that crashed and have not been skipped yet. It is
	// zero in the Info returned by ForceRelease.
	Waiters int
	// Kind is what the name is: "mutex", "election", "semaphore" or
	// "read-write lock".
	Kind string
	// Value is an election leader's value.
	Value string
	// Limit is a semaphore's limit.
	Limit int
	// Holders lists the holders of a shared lock (a semaphore's permits, a
	// read-write lock's readers or writer), oldest first; the fields
	// above then describe the newest of them. Nil for exclusive kinds.
	Holders []Holder
}

// Holder is one holder of a shared lock.
type Holder struct {
	Owner      string // random owner id (a capability: show only a prefix)
	Token      uint64
	Holder     string // holder text
	Write      bool   // a read-write lock's writer
	AcquiredAt time.Time
	TTL        time.Duration // what was left of its lease
}

// inspectBatch bounds the keys read in one pipelined round trip by List.
const inspectBatch = 1000

// Inspect reports who holds key, in one round trip. It returns an error
// wrapping ErrNotHeld when nobody does (also when only the token tombstone
// of a released lock is left).
func (c *Client) Inspect(ctx context.Context, key string) (*Info, error) {
	if err := c.checkOperatorArgs(ctx, key); err != nil {
		return nil, err
	}
	infos, err := c.read(ctx, []string{c.cfg.prefix + key}, false)
	if err != nil {
		return nil, fmt.Errorf("renewlock: inspect %q: %w", key, classify(err, c.cfg.prefix+key))
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("%w: key %q", ErrNotHeld, key)
	}
	return &infos[0], nil
}

// List reports every held key whose name (without the key prefix) matches
// the glob pattern, sorted by key. An empty pattern matches every key. It
// walks the keyspace with SCAN (on a Cluster, on every master), so it does
// not block Redis, and may miss or repeat keys taken or released meanwhile
// (repeats are removed). Keys under the prefix that are not locks are
// skipped.
func (c *Client) List(ctx context.Context, pattern string) ([]Info, error) {
	if ctx == nil {
		return nil, fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	if c.ctx.Err() != nil {
		return nil, ErrClientClosed
	}
	if pattern == "" {
		pattern = "*"
	}
	match := escapeGlob(c.cfg.prefix) + pattern

	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, rdb redis.Cmdable) error {
		var found []string
		var cursor uint64
		for {
			batch, next, err := rdb.Scan(ctx, cursor, match, 1000).Result()
			if err != nil {
				return err
			}
			found = append(found, batch...)
			if cursor = next; cursor == 0 {
				break
			}
		}
		mu.Lock()
		keys = append(keys, found...)
		mu.Unlock()
		return nil
	}
	var err error
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scan(ctx, node)
		})
	} else {
		err = scan(ctx, c.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("renewlock: list %q: %w", pattern, classify(err, ""))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // SCAN may return a key more than once

	out := []Info{}
	for len(keys) > 0 {
		n := min(len(keys), inspectBatch)
		infos, err := c.read(ctx, keys[:n], true)
		if err != nil {
			return nil, fmt.Errorf("renewlock: list %q: %w", pattern, classify(err, ""))
		}
		out = append(out, infos...)
		keys = keys[n:]
	}
	return out, nil
}

// ForceRelease removes whoever holds key, whatever its owner id, and wakes
// the waiters, in one round trip. It is an operator's escape hatch for a
// holder that is known to be dead; a live holder learns of the loss at its
// next renewal, and until then may still act on the resource, so only
// fencing tokens keep the resource safe. The next holder's token is still
// larger (tokens never go below the server clock, and a token ahead of the
// clock is kept as a tombstone). It returns what was removed (with a
// zero TTL), or an error wrapping ErrNotHeld if nobody held the key.
func (c *Client) ForceRelease(ctx context.Context, key string) (*Info, error) {
	if err := c.checkOperatorArgs(ctx, key); err != nil {
		return nil, err
	}
	rkey := c.cfg.prefix + key
	vals, err := forceReleaseScript.Run(ctx, c.rdb, []string{rkey}).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: key %q", ErrNotHeld, key)
	}
	if err != nil {
		return nil, fmt.Errorf("renewlock: force release %q: %w", key, classify(err, rkey))
	}
	info, ok, err := parseInfo(key, vals)
	if err != nil {
		return nil, fmt.Errorf("renewlock: force release %q: %w", key, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: key %q", ErrNotHeld, key)
	}
	return &info, nil
}

func (c *Client) checkOperatorArgs(ctx context.Context, key string) error {
	if ctx == nil {
		return fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	if c.ctx.Err() != nil {
		return ErrClientClosed
	}
	return nil
}

// read fetches the locks at the Redis keys rkeys (all under the prefix) in
// one pipelined round trip and returns the held ones, in order. skipOthers
// skips keys that hold other data (List); else they are an error.
func (c *Client) read(ctx context.Context, rkeys []string, skipOthers bool) ([]Info, error) {
	cmds := evalPipelined(ctx, c.rdb, len(rkeys), func(i int) (*redis.Script, []string, []any) {
		return inspectScript, []string{rkeys[i]}, nil
	})
	var out []Info
	for i, k := range rkeys {
		vals, err := cmds[i].Slice()
		if err != nil {
			if skipOthers && redis.HasErrorPrefix(err, "WRONGTYPE") {
				continue // a key under our prefix that is not a lock
			}
			return nil, classify(err, k)
		}
		info, ok, err := parseInfo(strings.TrimPrefix(k, c.cfg.prefix), vals)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		if ok {
			out = append(out, info)
		}
	}
	return out, nil
}

// parseInfo decodes the reply of inspect.lua (owner, token, holder,
// acquired-at, ms left, waiters, kind, value, limit, then six fields per
// holder of a shared lock) or the four fields of force_release.lua's. ok
// is false for a key nobody holds.
func parseInfo(key string, vals []any) (info Info, ok bool, err error) {
	if len(vals) < 4 {
		return Info{}, false, fmt.Errorf("lock: %d fields, want at least 4", len(vals))
	}
	str := func(v any) string {
		s, _ := v.(string)
		return s
	}
	num := func(v any) int64 {
		switch n := v.(type) {
		case int64:
			return n
		case string:
			i, _ := strconv.ParseInt(n, 10, 64)
			return i
		}
		return 0
	}
	info = Info{Key: key, Owner: str(vals[0]), Holder: str(vals[2]), Kind: kindMutex.name}
	if info.Owner != "" {
		if info.Token, err = strconv.ParseUint(str(vals[1]), 10, 64); err != nil {
			return Info{}, false, fmt.Errorf("lock: fencing token %q: %w", str(vals[1]), err)
		}
		info.AcquiredAt = micros(str(vals[3]))
	}
	if len(vals) >= 9 {
		info.TTL = time.Duration(max(num(vals[4]), 0)) * time.Millisecond
		info.Waiters = int(num(vals[5]))
		info.Kind = kindName(str(vals[6]))
		info.Value = str(vals[7])
		info.Limit = int(num(vals[8]))
		for i := 9; i+5 < len(vals); i += 6 {
			tok, err := strconv.ParseUint(str(vals[i+1]), 10, 64)
			if err != nil {
				return Info{}, false, fmt.Errorf("lock: fencing token %q: %w", str(vals[i+1]), err)
			}
			info.Holders = append(info.Holders, Holder{
				Owner: str(vals[i]), Token: tok, Write: str(vals[i+2]) == "x",
				AcquiredAt: micros(str(vals[i+3])), Holder: str(vals[i+4]),
				TTL: time.Duration(max(num(vals[i+5]), 0)) * time.Millisecond,
			})
		}
		if n := len(info.Holders); n > 0 {
			newest := info.Holders[n-1]
			for _, h := range info.Holders {
				if h.Token > newest.Token {
					newest = h
				}
			}
			info.Owner, info.Token, info.Holder, info.AcquiredAt, info.TTL = newest.Owner, newest.Token, newest.Holder, newest.AcquiredAt, newest.TTL
		}
	}
	return info, info.Owner != "", nil
}

// micros parses a time in µs since the epoch; zero if s is not one.
func micros(s string) time.Time {
	us, err := strconv.ParseInt(s, 10, 64)
	if err != nil || s == "" {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// escapeGlob quotes the glob metacharacters of s for a Redis MATCH pattern,
// so a key prefix is matched literally.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ { // bytewise: keys need not be UTF-8
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
