package renewlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrNoLeader is returned by Leader when nobody leads the election.
var ErrNoLeader = errors.New("renewlock: no leader")

// A Leader is who leads an election, as read from Redis.
type Leader struct {
	// Value is what the leader campaigned with (an address, a name).
	Value string
	// Term is the leader's fencing token: every later term of the
	// election is larger, also after a crash or an empty restart of Redis.
	Term uint64
	// Holder is the leader's holder text (WithHolder; by default
	// "HOSTNAME:PID").
	Holder string
}

// A Leadership is one term of leadership of an election, won by Campaign.
// It is a lease like a Lock: the Client renews it in the background, and
// Done closes the moment it is lost (or resigned). A leader must stop
// acting as leader when Done closes, and should pass Term to any resource
// that can check it, so that a deposed leader that did not notice in time
// is refused.
type Leadership struct {
	lock  *Lock
	name  string
	value string
}

// Name returns the election's name.
func (l *Leadership) Name() string { return l.name }

// Value returns the value the leader campaigned with.
func (l *Leadership) Value() string { return l.value }

// Term returns this term's fencing token: strictly larger than every
// earlier term of the election.
func (l *Leadership) Term() uint64 { return l.lock.Token() }

// Done returns a channel that is closed when the leadership ends: lost
// (Err wraps ErrLeaseLost), resigned (ErrReleased) or the Client closed
// (ErrClientClosed).
func (l *Leadership) Done() <-chan struct{} { return l.lock.Done() }

// Err returns nil while the leadership lasts, and after Done is closed why
// it ended.
func (l *Leadership) Err() error { return l.lock.Err() }

// Context returns a copy of parent that is cancelled when the leadership
// ends, with Err as its cause, as Lock.Context does.
func (l *Leadership) Context(parent context.Context) (context.Context, context.CancelFunc) {
	return l.lock.Context(parent)
}

// Resign ends the leadership, as Lock.Release does: the next candidate in
// the queue becomes leader at once, and observers hear of it.
func (l *Leadership) Resign(ctx context.Context) error { return l.lock.Release(ctx) }

// leaderChannel is the channel on which an election's changes are
// announced.
func leaderChannel(cfg *config, name string) string { return cfg.prefix + "leader:" + name }

// Campaign runs for leader of the election name with value, and returns
// when it is elected or ctx ends. Candidates wait in the election's queue,
// in the order they came, across clients; when the leader resigns the next
// one leads at once, and when the leader crashes the next one leads when
// its lease ends. Each term's Term is larger than every earlier one.
// Observers (Observe) hear of every change. When ctx ends first, the error
// wraps ctx.Err() and the candidate leaves the queue (a leadership granted
// meanwhile is passed on). An election is a kind of lock: its name cannot
// be used as a mutex, semaphore or read-write lock at the same time.
func (c *Client) Campaign(ctx context.Context, name, value string, opts ...Option) (*Leadership, error) {
	l, err := c.take(ctx, kindElection, name, opts, true, func(le *lease) {
		le.args = &kindArgs{value: value, notify: leaderChannel(le.cfg, name)}
	})
	if err != nil {
		return nil, err
	}
	return &Leadership{lock: l, name: name, value: value}, nil
}

// Lead campaigns for name with value, runs fn as leader, and resigns when
// fn returns — also when it panics, and also when ctx ends while it is
// still campaigning. The ctx passed to fn is cancelled the moment the
// leadership is lost, with context.Cause wrapping ErrLeaseLost; fn should
// stop then. This is the callback style of Kubernetes' leaderelection
// (OnStartedLeading is fn; OnStoppedLeading is fn returning; release on
// cancel is the resignation). The returned error joins fn's and the
// resignation's: errors.Is(err, ErrLeaseLost) reports a lost leadership.
func (c *Client) Lead(ctx context.Context, name, value string, fn func(ctx context.Context, l *Leadership) error, opts ...Option) (err error) {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidArgument)
	}
	l, err := c.Campaign(ctx, name, value, opts...)
	if err != nil {
		return err
	}
	lctx, cancel := l.Context(ctx)
	defer func() {
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), l.lock.le.cfg.ttl)
		defer rcancel()
		if rerr := l.Resign(rctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	return fn(lctx, l)
}

// Leader returns who leads the election name now, or an error wrapping
// ErrNoLeader. It is one round trip and changes nothing.
func (c *Client) Leader(ctx context.Context, name string) (Leader, error) {
	ld, _, err := c.leader(ctx, name)
	return ld, err
}

// leader reads the election name: its leader (ErrNoLeader if none) and
// what is left of the leader's lease.
func (c *Client) leader(ctx context.Context, name string) (Leader, time.Duration, error) {
	if err := c.checkOperatorArgs(ctx, name); err != nil {
		return Leader{}, 0, err
	}
	rkey := c.cfg.prefix + name
	vals, err := inspectScript.Run(ctx, c.rdb, []string{rkey}).Slice()
	if err != nil {
		return Leader{}, 0, fmt.Errorf("renewlock: leader of %q: %w", name, classify(err, rkey))
	}
	if len(vals) < 9 {
		return Leader{}, 0, fmt.Errorf("renewlock: leader of %q: inspect script returned %d values", name, len(vals))
	}
	kind, _ := vals[6].(string)
	owner, _ := vals[0].(string)
	if owner == "" {
		if kind == "s" || kind == "r" {
			return Leader{}, 0, fmt.Errorf("%w: %q is a %s, not an election (one name is one kind of lock)", ErrRejected, name, kindName(kind))
		}
		return Leader{}, 0, fmt.Errorf("%w: election %q", ErrNoLeader, name)
	}
	if kind != "e" {
		return Leader{}, 0, fmt.Errorf("%w: %q is a mutex, not an election (one name is one kind of lock)", ErrRejected, name)
	}
	tok, _ := vals[1].(string)
	term, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return Leader{}, 0, fmt.Errorf("renewlock: leader of %q: term %q: %w", name, tok, err)
	}
	holder, _ := vals[2].(string)
	value, _ := vals[7].(string)
	left, _ := vals[4].(int64)
	return Leader{Value: value, Term: term, Holder: holder}, time.Duration(max(left, 0)) * time.Millisecond, nil
}

func kindName(code string) string {
	switch code {
	case "e":
		return kindElection.name
	case "s":
		return kindSemaphore.name
	case "r":
		return kindRWLock.name
	}
	return kindMutex.name
}

// Observe watches the election name: the channel delivers its current
// leader at once (a zero Leader when there is none), then every change — a
// new term, or a zero Leader when the leader resigned or its lease ended —
// until ctx ends or the Client closes; then it is closed. Changes are
// announced by Redis as they happen (pub/sub, on the Client's one
// subscription connection); the end of a crashed leader's lease is seen
// when it comes. A reader that falls behind does not block anyone: it
// gets the latest leader when it reads again, and may miss terms between.
// Redis errors are retried until ctx ends.
func (c *Client) Observe(ctx context.Context, name string) <-chan Leader {
	out := make(chan Leader)
	c.mu.Lock()
	if c.closed || c.ctx.Err() != nil || name == "" || ctx == nil {
		c.mu.Unlock()
		close(out)
		return out
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer close(out)
		c.observe(ctx, name, out)
	}()
	return out
}

func (c *Client) observe(ctx context.Context, name string, out chan<- Leader) {
	l, stop := c.hub.listen(leaderChannel(&c.cfg, name))
	defer stop()
	var events, ready <-chan struct{}
	if l != nil {
		events, ready = l.events, l.ready
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	last, sent := Leader{}, false
	backoff := 10 * time.Millisecond
	for {
		// Read now; again once the subscription is confirmed (a change in
		// between would have been missed), on every announcement, and when
		// the leader's lease would end.
		ld, left, err := c.leader(ctx, name)
		switch {
		case err == nil:
			timer.Reset(left + time.Millisecond)
			backoff = 10 * time.Millisecond
		case errors.Is(err, ErrNoLeader):
			ld = Leader{}
			timer.Reset(time.Hour)
			backoff = 10 * time.Millisecond
		case ctx.Err() != nil || c.ctx.Err() != nil:
			return
		default: // Redis unavailable or refusing: try again
			timer.Reset(backoff)
			backoff = min(2*backoff, time.Second)
			ld = last
		}
		if !sent || ld != last {
			select {
			case out <- ld:
				last, sent = ld, true
			case <-ctx.Done():
				return
			case <-c.ctx.Done():
				return
			}
		}
		select {
		case <-ready:
			ready = nil
		case <-events:
		case <-timer.C:
		case <-ctx.Done():
			return
		case <-c.ctx.Done():
			return
		}
	}
}
