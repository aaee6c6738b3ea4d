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
	}
	if !in.AcquiredAt.IsZero() {
		at := in.AcquiredAt.UTC()
		j.AcquiredAt = &at
	}
	return j
}

// withClient connects to Redis and runs f with a renewlock client. what
// names the operation in messages.
func (o *OpConfig) withClient(what string, f func(ctx context.Context, c *renewlock.Client) error) error {
	rdb, err := NewRedisClient(o.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	c, err := renewlock.New(rdb, renewlock.WithKeyPrefix(o.Prefix), renewlock.WithLogger(nil))
	if err != nil {
		return Usagef("%s", libErr(err))
	}
	defer c.Close()
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
	return f(ctx, c)
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
		tw := tabwriter.NewWriter(o.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tHOLDER\tOWNER\tTOKEN\tTTL\tWAITERS\tACQUIRED")
		for i := range infos {
			in := &infos[i]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%d\t%s\n", displayKey(in.Key), displayKey(in.Holder), ownerPrefix(in.Owner), in.Token,
				in.TTL.Round(time.Millisecond), in.Waiters, o.ago(in.AcquiredAt))
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
	holder := displayKey(in.Holder)
	if host, pid, ok := SplitHolder(in.Holder); ok {
		holder = fmt.Sprintf("%s (host %s, pid %d)", holder, displayKey(host), pid)
	}
	fmt.Fprintf(tw, "holder:\t%s\n", holder)
	fmt.Fprintf(tw, "owner:\t%s…\n", ownerPrefix(in.Owner))
	fmt.Fprintf(tw, "token:\t%d\n", in.Token)
	if withTTL {
		fmt.Fprintf(tw, "ttl:\t%v\n", in.TTL.Round(time.Millisecond))
		fmt.Fprintf(tw, "waiters:\t%d\n", in.Waiters)
	}
	fmt.Fprintf(tw, "acquired:\t%s\n", o.ago(in.AcquiredAt))
	_ = tw.Flush()
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
