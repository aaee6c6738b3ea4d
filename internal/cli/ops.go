package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// DefaultOpTimeout bounds status, list and release.
const DefaultOpTimeout = 10 * time.Second

// OpConfig is the common configuration of status, list and release.
type OpConfig struct {
	Redis   RedisTarget
	Prefix  string
	JSON    bool
	Timeout time.Duration // 0: DefaultOpTimeout
	Stdout  io.Writer
	Now     func() time.Time // nil: time.Now
}

// LockJSON is the --json form of one lock, as printed by status, list and
// release. Owner is a prefix of the owner id: the full id would let the
// reader renew or release the lock.
type LockJSON struct {
	Key        string     `json:"key"`
	Held       bool       `json:"held"`
	Holder     string     `json:"holder,omitempty"`
	Host       string     `json:"host,omitempty"`
	PID        int        `json:"pid,omitempty"`
	Owner      string     `json:"owner,omitempty"`
	Token      uint64     `json:"token,omitempty"`
	TTLMillis  *int64     `json:"ttl_ms,omitempty"`
	Waiters    *int       `json:"waiters,omitempty"` // places in the lock's queue
	AcquiredAt *time.Time `json:"acquired_at,omitempty"`
	Released   bool       `json:"released,omitempty"`
	// Kind is "mutex", "election", "semaphore" or "read-write lock" (not
	// given by release). For a semaphore or a read-write lock, the fields
	// above describe the holder with the newest token, and Holders lists
	// them all.
	Kind    string       `json:"kind,omitempty"`
	Value   string       `json:"value,omitempty"` // an election's leader value
	Limit   int          `json:"limit,omitempty"` // a semaphore's limit
	Holders []HolderJSON `json:"holders,omitempty"`
}

// HolderJSON is one holder of a semaphore or a read-write lock.
type HolderJSON struct {
	Holder     string     `json:"holder"`
	Host       string     `json:"host,omitempty"`
	PID        int        `json:"pid,omitempty"`
	Owner      string     `json:"owner"`
	Token      uint64     `json:"token"`
	Mode       string     `json:"mode,omitempty"` // a read-write lock's: "read" or "write"
	TTLMillis  int64      `json:"ttl_ms"`
	AcquiredAt *time.Time `json:"acquired_at,omitempty"`
}

// SplitHolder splits the default holder description "HOST:PID". ok is false
// for a holder in another form (set with renewlock.WithHolder).
func SplitHolder(holder string) (host string, pid int, ok bool) {
	i := strings.LastIndexByte(holder, ':')
	if i <= 0 {
		return "", 0, false
	}
	pid, err := strconv.Atoi(holder[i+1:])
	if err != nil || pid <= 0 || holder[i+1] == '+' {
		return "", 0, false
	}
	return holder[:i], pid, true
}

func toJSON(in *renewlock.Info, withTTL bool) LockJSON {
	j := LockJSON{Key: in.Key, Held: true, Holder: in.Holder, Owner: ownerPrefix(in.Owner), Token: in.Token}
	if host, pid, ok := SplitHolder(in.Holder); ok {
		j.Host, j.PID = host, pid
	}
	if withTTL {
		ms := in.TTL.Milliseconds()
		j.TTLMillis = &ms
		w := in.Waiters
		j.Waiters = &w
		// An Info read by Inspect or List knows its kind (ForceRelease's
		// does not).
		j.Kind, j.Value, j.Limit = in.Kind, in.Value, in.Limit
		for _, h := range in.Holders {
			hj := HolderJSON{Holder: h.Holder, Owner: ownerPrefix(h.Owner), Token: h.Token, Mode: holderMode(in, h), TTLMillis: h.TTL.Milliseconds()}
			if host, pid, ok := SplitHolder(h.Holder); ok {
				hj.Host, hj.PID = host, pid
			}
			if !h.AcquiredAt.IsZero() {
				at := h.AcquiredAt.UTC()
				hj.AcquiredAt = &at
			}
			j.Holders = append(j.Holders, hj)
		}
	}
	if !in.AcquiredAt.IsZero() {
		at := in.AcquiredAt.UTC()
		j.AcquiredAt = &at
	}
	return j
}

// holderMode is "read" or "write" for a holder of a read-write lock, ""
// for other kinds.
func holderMode(in *renewlock.Info, h renewlock.Holder) string {
	switch {
	case in.Kind != rwlockKind:
		return ""
	case h.Write:
		return "write"
	}
	return "read"
}

// rwlockKind is renewlock.Info.Kind of a read-write lock.
const rwlockKind = "read-write lock"

// kindText describes the kind of in for status and list: "mutex",
// "election", "semaphore 2/3" (holders/limit), "read-write lock".
func kindText(in *renewlock.Info) string {
	if in.Limit > 0 {
		return fmt.Sprintf("%s %d/%d", in.Kind, len(in.Holders), in.Limit)
	}
	return in.Kind
}

// withClient connects to Redis and runs f with a renewlock client. what
// names the operation in messages.
func (o *OpConfig) withClient(what string, f func(ctx context.Context, c *renewlock.Client) error) error {
	return o.withRedis(what, func(ctx context.Context, _ redis.UniversalClient, c *renewlock.Client) error { return f(ctx, c) })
}

// openOperator returns a go-redis client for target and a quiet renewlock
// Client on it with prefix, for the commands that read or remove locks
// (status, list, release, watch, exporter); close releases both.
func openOperator(target RedisTarget, prefix string) (rdb redis.UniversalClient, c *renewlock.Client, close func(), err error) {
	rdb, err = NewRedisClient(target)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err = renewlock.New(rdb, renewlock.WithKeyPrefix(prefix), renewlock.WithLogger(nil))
	if err != nil {
		_ = rdb.Close()
		return nil, nil, nil, Usagef("%s", libErr(err))
	}
	return rdb, c, func() { _ = c.Close(); _ = rdb.Close() }, nil
}

// withRedis is withClient for an f that needs the go-redis client too.
func (o *OpConfig) withRedis(what string, f func(ctx context.Context, rdb redis.UniversalClient, c *renewlock.Client) error) error {
	rdb, c, closeAll, err := openOperator(o.Redis, o.Prefix)
	if err != nil {
		return err
	}
	defer closeAll()
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultOpTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// A failed login shows as itself, not as whatever the first command
	// makes of it.
	if err := pingErr(ctx, rdb); err != nil {
		return o.failed(what, err)
	}
	return f(ctx, rdb, c)
}

// failed is the exit for err, a failure of what in Redis.
func (o *OpConfig) failed(what string, err error) error {
	return redisFailure(what, o.Redis, err)
}

func (o *OpConfig) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Status prints who holds key. It returns an ExitError with ExitNotHeld
// (after printing that) when nobody does.
func Status(o *OpConfig, key string) error {
	if key == "" {
		return Usagef("empty key")
	}
	return o.withClient("status "+displayKey(key), func(ctx context.Context, c *renewlock.Client) error {
		info, err := c.Inspect(ctx, key)
		if errors.Is(err, renewlock.ErrNotHeld) {
			if o.JSON {
				return o.printJSON(LockJSON{Key: key}, &ExitError{Code: ExitNotHeld})
			}
			fmt.Fprintf(o.Stdout, "%s: not held\n", displayKey(key))
			return &ExitError{Code: ExitNotHeld}
		}
		if err != nil {
			return o.failed("status "+displayKey(key), err)
		}
		if o.JSON {
			return o.printJSON(toJSON(info, true), nil)
		}
		o.printDetail(info, true)
		return nil
	})
}

// List prints every held lock whose key matches the glob pattern ("" or
// "*": all), sorted by key.
func List(o *OpConfig, pattern string) error {
	return o.withClient("list", func(ctx context.Context, c *renewlock.Client) error {
		infos, err := c.List(ctx, pattern)
		if err != nil {
			return o.failed("list", err)
		}
		if o.JSON {
			out := make([]LockJSON, len(infos))
			for i := range infos {
				out[i] = toJSON(&infos[i], true)
			}
			return o.printJSON(out, nil)
		}
		if len(infos) == 0 {
			if pattern == "" {
				fmt.Fprintln(o.Stdout, "no locks held")
			} else {
				fmt.Fprintf(o.Stdout, "no locks held matching %s\n", strquote(pattern))
			}
			return nil
		}
		// One row per holder: a semaphore or a read-write lock has several.
		tw := tabwriter.NewWriter(o.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tKIND\tHOLDER\tOWNER\tTOKEN\tTTL\tWAITERS\tACQUIRED")
		for i := range infos {
			in := &infos[i]
			row := func(kind, holder, owner string, token uint64, ttl time.Duration, at time.Time) {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%v\t%d\t%s\n", displayKey(in.Key), kind, holder, ownerPrefix(owner), token,
					ttl.Round(time.Millisecond), in.Waiters, o.ago(at))
			}
			if len(in.Holders) == 0 {
				holder := displayKey(in.Holder)
				if in.Kind == electionKind {
					holder += " value=" + displayKey(in.Value)
				}
				row(kindText(in), holder, in.Owner, in.Token, in.TTL, in.AcquiredAt)
				continue
			}
			for _, h := range in.Holders {
				kind := kindText(in)
				if m := holderMode(in, h); m != "" {
					kind += " (" + m + ")"
				}
				row(kind, displayKey(h.Holder), h.Owner, h.Token, h.TTL, h.AcquiredAt)
			}
		}
		return tw.Flush()
	})
}

// ForceRelease removes whoever holds key and prints what it removed. It
// returns an ExitError with ExitNotHeld when nobody held it.
func ForceRelease(o *OpConfig, key string) error {
	if key == "" {
		return Usagef("empty key")
	}
	return o.withClient("release "+displayKey(key), func(ctx context.Context, c *renewlock.Client) error {
		info, err := c.ForceRelease(ctx, key)
		if errors.Is(err, renewlock.ErrNotHeld) {
			if o.JSON {
				return o.printJSON(LockJSON{Key: key}, &ExitError{Code: ExitNotHeld})
			}
			fmt.Fprintf(o.Stdout, "%s: not held; nothing removed\n", displayKey(key))
			return &ExitError{Code: ExitNotHeld}
		}
		if err != nil {
			return o.failed("release "+displayKey(key), err)
		}
		if o.JSON {
			j := toJSON(info, false)
			j.Held, j.Released = false, true
			return o.printJSON(j, nil)
		}
		fmt.Fprintf(o.Stdout, "released %s: removed the lease of\n", displayKey(key))
		o.printDetail(info, false)
		return nil
	})
}

func (o *OpConfig) printDetail(in *renewlock.Info, withTTL bool) {
	tw := tabwriter.NewWriter(o.Stdout, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "key:\t%s\n", displayKey(in.Key))
	if withTTL { // read by Inspect, which knows the kind
		fmt.Fprintf(tw, "kind:\t%s\n", in.Kind)
		switch {
		case in.Kind == electionKind:
			fmt.Fprintf(tw, "value:\t%s\n", displayKey(in.Value))
		case len(in.Holders) > 0:
			o.printHolders(tw, in)
			return
		}
	}
	fmt.Fprintf(tw, "holder:\t%s\n", holderText(in.Holder))
	fmt.Fprintf(tw, "owner:\t%s…\n", ownerPrefix(in.Owner))
	fmt.Fprintf(tw, "token:\t%d\n", in.Token)
	if withTTL {
		fmt.Fprintf(tw, "ttl:\t%v\n", in.TTL.Round(time.Millisecond))
		fmt.Fprintf(tw, "waiters:\t%d\n", in.Waiters)
	}
	fmt.Fprintf(tw, "acquired:\t%s\n", o.ago(in.AcquiredAt))
	_ = tw.Flush()
}

// printHolders ends the status of a semaphore or a read-write lock: its
// limit, its waiters and a table of its holders.
func (o *OpConfig) printHolders(tw *tabwriter.Writer, in *renewlock.Info) {
	if in.Limit > 0 {
		fmt.Fprintf(tw, "limit:\t%d (%d held)\n", in.Limit, len(in.Holders))
	}
	fmt.Fprintf(tw, "waiters:\t%d\n", in.Waiters)
	fmt.Fprintf(tw, "holders:\t%d\n", len(in.Holders))
	_ = tw.Flush()
	ht := tabwriter.NewWriter(o.Stdout, 0, 0, 2, ' ', 0)
	mode := in.Kind == rwlockKind
	head := "  HOLDER\tOWNER\tTOKEN\tTTL\tACQUIRED"
	if mode {
		head = "  HOLDER\tMODE\tOWNER\tTOKEN\tTTL\tACQUIRED"
	}
	fmt.Fprintln(ht, head)
	for _, h := range in.Holders {
		m := ""
		if mode {
			m = holderMode(in, h) + "\t"
		}
		fmt.Fprintf(ht, "  %s\t%s%s\t%d\t%v\t%s\n", displayKey(h.Holder), m, ownerPrefix(h.Owner), h.Token, h.TTL.Round(time.Millisecond), o.ago(h.AcquiredAt))
	}
	_ = ht.Flush()
}

// ago formats an acquisition time with its age.
func (o *OpConfig) ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	age := o.now().Sub(t)
	switch {
	case age < 0:
		age = 0
	case age >= time.Minute:
		age = age.Round(time.Second)
	default:
		age = age.Round(time.Millisecond)
	}
	return fmt.Sprintf("%s (%v ago)", t.UTC().Format(time.RFC3339Nano), age)
}

func (o *OpConfig) printJSON(v any, ret error) error {
	enc := json.NewEncoder(o.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitf(ExitSoftware, "writing JSON: %v", err)
	}
	return ret
}
