package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// LeaderJSON is the --json form of an election's leader, printed by
// `renewlock leader` (indented) and by `renewlock leader --watch` (one
// object per line, per change). Value, Term and Holder are empty when
// Leader is false. The one-shot form adds the lease left and when the
// leader was elected.
type LeaderJSON struct {
	Name      string     `json:"name"`
	Value     string     `json:"value"`
	Term      uint64     `json:"term"`
	Holder    string     `json:"holder"`
	Leader    bool       `json:"leader"`
	Time      time.Time  `json:"time"` // when this was read (--watch: seen)
	Host      string     `json:"host,omitempty"`
	PID       int        `json:"pid,omitempty"`
	TTLMillis *int64     `json:"ttl_ms,omitempty"`
	ElectedAt *time.Time `json:"elected_at,omitempty"`
}

// Leader prints who leads the election name. It returns an ExitError with
// ExitNotHeld (after printing that) when nobody does. With watch it then
// prints every change, one line each, until SIGINT or SIGTERM (exit 0).
func Leader(o *OpConfig, name string, watch bool) error {
	if name == "" {
		return Usagef("empty election name")
	}
	what := "leader of " + displayKey(name)
	// --watch ends with SIGINT or SIGTERM, also one that comes early.
	wctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return o.withRedis(what, func(ctx context.Context, rdb redis.UniversalClient, c *renewlock.Client) error {
		// Read it once, also before watching: a name that is another kind
		// of lock, or a Redis that refuses, fails now.
		info, err := c.Inspect(ctx, name)
		switch {
		case errors.Is(err, renewlock.ErrNotHeld):
			info = nil
		case err != nil:
			return o.failed(what, err)
		case info.Kind != electionKind:
			return exitf(ExitConfig, "%s: %s is a %s, not an election (one name is one kind of lock)", what, displayKey(name), info.Kind)
		}
		if watch {
			// Observe cannot say that it may not subscribe; it would
			// then see changes only when a leader's lease ends.
			if err := o.canSubscribe(ctx, rdb, name); err != nil {
				return o.failed(what+" --watch", err)
			}
			return o.watchLeader(wctx, c, name)
		}
		if info == nil {
			if o.JSON {
				return o.printJSON(LeaderJSON{Name: name, Time: o.now().UTC()}, &ExitError{Code: ExitNotHeld})
			}
			fmt.Fprintf(o.Stdout, "%s: no leader\n", displayKey(name))
			return &ExitError{Code: ExitNotHeld}
		}
		if o.JSON {
			j := leaderJSON(name, renewlock.Leader{Value: info.Value, Term: info.Token, Holder: info.Holder}, o.now())
			ms := info.TTL.Milliseconds()
			j.TTLMillis = &ms
			if !info.AcquiredAt.IsZero() {
				at := info.AcquiredAt.UTC()
				j.ElectedAt = &at
			}
			return o.printJSON(j, nil)
		}
		tw := tabwriter.NewWriter(o.Stdout, 0, 0, 1, ' ', 0)
		fmt.Fprintf(tw, "election:\t%s\n", displayKey(name))
		fmt.Fprintf(tw, "leader:\t%s\n", displayKey(info.Value))
		fmt.Fprintf(tw, "term:\t%d\n", info.Token)
		fmt.Fprintf(tw, "holder:\t%s\n", holderText(info.Holder))
		fmt.Fprintf(tw, "ttl:\t%v\n", info.TTL.Round(time.Millisecond))
		fmt.Fprintf(tw, "candidates:\t%d waiting\n", info.Waiters)
		fmt.Fprintf(tw, "elected:\t%s\n", o.ago(info.AcquiredAt))
		return tw.Flush()
	})
}

func leaderJSON(name string, ld renewlock.Leader, at time.Time) LeaderJSON {
	j := LeaderJSON{Name: name, Value: ld.Value, Term: ld.Term, Holder: ld.Holder, Leader: ld.Term != 0, Time: at.UTC()}
	if host, pid, ok := SplitHolder(ld.Holder); ok {
		j.Host, j.PID = host, pid
	}
	return j
}

// watchLeader prints the election's leader, then every change, until
// SIGINT or SIGTERM. Redis outages are retried (by Observe) without a
// word; the next change is printed when Redis answers again.
func (o *OpConfig) watchLeader(ctx context.Context, c *renewlock.Client, name string) error {
	enc := json.NewEncoder(o.Stdout)
	for ld := range c.Observe(ctx, name) {
		now := o.now()
		if o.JSON {
			j := leaderJSON(name, ld, now)
			j.Host, j.PID = "", 0 // the fixed fields only
			if err := enc.Encode(j); err != nil {
				return exitf(ExitSoftware, "writing JSON: %v", err)
			}
			continue
		}
		stamp := now.UTC().Format(time.RFC3339Nano)
		var err error
		if ld.Term == 0 {
			_, err = fmt.Fprintf(o.Stdout, "%s %s: no leader\n", stamp, displayKey(name))
		} else {
			_, err = fmt.Fprintf(o.Stdout, "%s %s: leader %s (term %d, holder %s)\n", stamp, displayKey(name), displayKey(ld.Value), ld.Term, displayKey(ld.Holder))
		}
		if err != nil {
			return exitf(ExitSoftware, "writing: %v", err)
		}
	}
	return nil
}

// canSubscribe checks that the user may subscribe to the channel on which
// the election's changes are announced.
func (o *OpConfig) canSubscribe(ctx context.Context, rdb redis.UniversalClient, name string) error {
	ps := rdb.Subscribe(ctx, o.Prefix+"leader:"+name)
	defer ps.Close()
	_, err := ps.Receive(ctx)
	return err
}

// holderText is a holder description with its host and pid spelled out,
// when it has the default HOST:PID form.
func holderText(holder string) string {
	s := displayKey(holder)
	if host, pid, ok := SplitHolder(holder); ok {
		s = fmt.Sprintf("%s (host %s, pid %d)", s, displayKey(host), pid)
	}
	return s
}
