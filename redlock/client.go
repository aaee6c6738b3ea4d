package redlock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/bridge"
)

// Waiting between attempts. A waiter sleeps a random time in [d/2, d],
// d doubling from minBackoff up to maxBackoff (or the renew interval's
// half, if shorter), unless it waits in the queue of the key's gate master.
const (
	minBackoff = time.Millisecond
	maxBackoff = 100 * time.Millisecond
	// minGateBackoff is the first wait of a waiter that holds the gate
	// master before it asks the others again: the holder that handed the
	// gate over releases them at the same moment.
	minGateBackoff = 500 * time.Microsecond
	// closeTimeout bounds the releases Close and a lost lock make.
	closeTimeout = 5 * time.Second
)

// A Client takes locks that hold on a majority of N independent Redis
// masters (the Redlock algorithm), with the renewal, loss signalling and
// fencing tokens of the renewlock mutex. It keeps one renewlock.Client per
// master, so the renewal of every lock held on a master is one round trip
// per renew interval, whatever the number of locks. A Client is safe for
// concurrent use; create one per process and Close it on shutdown.
type Client struct {
	masters []*master
	quorum  int
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc

	mu     sync.Mutex
	closed bool
	locks  map[*Lock]struct{} // held, for Close
	queued map[string]int     // Acquire calls waiting in a gate's queue, by key
	wg     sync.WaitGroup     // attempts in flight, background releases

	closeOnce sync.Once
	closeErr  error
}

// master is one of the independent Redis masters.
type master struct {
	i    int
	name string // for errors: "master 1 (127.0.0.1:6380)"
	rdb  redis.UniversalClient
	rl   *renewlock.Client
}

// New returns a Client that takes locks on a majority of masters: N
// independent Redis primaries (a *redis.Client each, or a Sentinel failover
// client), never replicas of one another and never the same server twice.
// The quorum is N/2+1: 2 of 3, 3 of 5. Even counts are allowed, but add no
// tolerance: 4 masters need 3 and survive one failure, like 3. opts are the
// renewlock options (WithTTL, WithDrift, WithSafetyMargin, WithKeyPrefix,
// …), the defaults of every acquisition; they apply on each master. New
// does not contact Redis. The masters stay owned by the caller: Close does
// not close them.
//
// A *redis.ClusterClient or a *redis.Ring is refused: a Redlock master is
// one server, and the Redlock itself is what spreads a lock over several.
func New(masters []redis.UniversalClient, opts ...renewlock.Option) (*Client, error) {
	if len(masters) == 0 {
		return nil, fmt.Errorf("%w: redlock: no masters; give 3 or 5 independent Redis primaries", renewlock.ErrInvalidArgument)
	}
	ptrs := make(map[uintptr]int)
	addrs := make(map[string]int)
	names := make([]string, len(masters))
	for i, m := range masters {
		if m == nil || isNilPointer(m) {
			return nil, fmt.Errorf("%w: redlock: master %d is nil", renewlock.ErrInvalidArgument, i)
		}
		switch m.(type) {
		case *redis.ClusterClient, *redis.Ring:
			return nil, fmt.Errorf("%w: redlock: master %d is a %T; a Redlock master must be one Redis primary (a *redis.Client, or a Sentinel failover client)",
				renewlock.ErrInvalidArgument, i, m)
		}
		if p := reflect.ValueOf(m); p.Kind() == reflect.Pointer {
			if j, ok := ptrs[p.Pointer()]; ok {
				return nil, fmt.Errorf("%w: redlock: masters %d and %d are the same client; a Redlock needs independent servers", renewlock.ErrInvalidArgument, j, i)
			}
			ptrs[p.Pointer()] = i
		}
		names[i] = fmt.Sprintf("master %d", i)
		if c, ok := m.(*redis.Client); ok {
			// A failover client's Addr is a placeholder: nothing to compare.
			if o := c.Options(); o.Addr != "" && o.Addr != "FailoverClient" {
				names[i] = fmt.Sprintf("master %d (%s)", i, o.Addr)
				addr := o.Network + "/" + o.Addr
				if j, ok := addrs[addr]; ok {
					return nil, fmt.Errorf("%w: redlock: masters %d and %d both connect to %s; a Redlock needs independent servers", renewlock.ErrInvalidArgument, j, i, o.Addr)
				}
				addrs[addr] = i
			}
		}
	}
	c := &Client{quorum: len(masters)/2 + 1, locks: make(map[*Lock]struct{}), queued: make(map[string]int)}
	for i, m := range masters {
		rl, err := renewlock.New(m, opts...)
		if err != nil {
			for _, prev := range c.masters {
				_ = prev.rl.Close()
			}
			return nil, fmt.Errorf("redlock: %w", err)
		}
		c.masters = append(c.masters, &master{i: i, name: names[i], rdb: m, rl: rl})
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if n := len(masters); n < 3 || n%2 == 0 {
		set, _ := bridge.Resolve(c.masters[0].rl, nil)
		set.Logger.Warn(fmt.Sprintf("redlock: %d masters: the quorum is %d, so a lock survives %d failed masters", n, c.quorum, n-c.quorum),
			"masters", n, "quorum", c.quorum)
	}
	return c, nil
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// Quorum returns how many masters an acquisition needs, and a held lock
// keeps: N/2+1 of the N masters.
func (c *Client) Quorum() int { return c.quorum }

// prepare checks the arguments of one acquisition and resolves its
// options.
func (c *Client) prepare(ctx context.Context, key string, opts []renewlock.Option) (bridge.Settings, error) {
	if ctx == nil {
		return bridge.Settings{}, fmt.Errorf("%w: nil context", renewlock.ErrInvalidArgument)
	}
	if key == "" {
		return bridge.Settings{}, fmt.Errorf("%w: empty key", renewlock.ErrInvalidArgument)
	}
	set, err := bridge.Resolve(c.masters[0].rl, opts)
	if err != nil {
		return set, fmt.Errorf("redlock: key %q: %w", key, err)
	}
	if c.ctx.Err() != nil {
		return set, renewlock.ErrClientClosed
	}
	if err := ctx.Err(); err != nil {
		return set, fmt.Errorf("redlock: acquire %q: %w", key, err)
	}
	return set, nil
}

// TryAcquire makes one attempt to take key on a quorum of the masters, all
// asked in parallel. If others hold it on so many masters that no quorum
// is left, it returns an error wrapping renewlock.ErrNotAcquired at once.
// Masters that fail or do not answer in time (TTL/10, at least 50 ms) count
// against the quorum; if that is what decided, the error says so and wraps
// their errors (renewlock.ErrRejected among them when retrying cannot fix
// it), never ErrNotAcquired. Whatever it took on a minority is released.
func (c *Client) TryAcquire(ctx context.Context, key string, opts ...renewlock.Option) (*Lock, error) {
	set, err := c.prepare(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	l, f := c.attempt(ctx, key, opts, set, nil, false)
	if l != nil {
		return l, nil
	}
	return nil, f.error(c, key)
}

// Acquire takes key, waiting as long as ctx allows while others hold it.
// Each attempt asks every master in parallel. Waiters are served in
// arrival order through one master chosen per key, the gate: a waiter
// waits in the gate's queue holding nothing, the holder's release hands
// the gate to the first waiter, which takes the other masters as the
// holder releases them, and every other attempt yields to it (see the
// package documentation for why no two waiters can wait for each other).
// A waiter that the gate does not stop (the gate master is down, say)
// sleeps a short random backoff between attempts instead. When ctx ends
// first the error wraps ctx.Err(), and whatever the attempts took is
// released. A Redis error that retrying cannot fix, on so many masters
// that no quorum is left, is returned at once.
func (c *Client) Acquire(ctx context.Context, key string, opts ...renewlock.Option) (*Lock, error) {
	set, err := c.prepare(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	gm := c.gate(key)
	// have holds the locks this waiter keeps between attempts: the gate
	// (it is next in line), and masters that the holder released to it
	// through their queues.
	have := make(map[*master]*renewlock.Lock)
	drop := func() {
		for m, hl := range have {
			c.releaseHeld(hl, set)
			delete(have, m)
		}
	}
	gateBackoff := minGateBackoff
	backoff := minBackoff
	maxWait := min(maxBackoff, set.Interval/2)
	var last error // the last attempt's failure, for the error when ctx ends
	if c.queuedFor(key) > 0 {
		// Others of this Client wait in the gate's queue already: join
		// them there rather than snatch the other masters from the one
		// the gate serves next.
		if g := c.waitGate(ctx, gm, key, opts, set); g != nil {
			have[gm] = g
		}
	}
	for {
		l, f := c.attempt(ctx, key, opts, set, have, true)
		if l != nil {
			return l, nil
		}
		if f.gate != nil {
			have[gm] = f.gate
		}
		for m, hl := range have {
			if hl.Err() != nil { // lost meanwhile (its master restarted, say)
				c.releaseHeld(hl, set)
				delete(have, m)
			}
		}
		ferr := f.error(c, key)
		if f.final() || errors.Is(ferr, renewlock.ErrClientClosed) || c.ctx.Err() != nil {
			drop()
			if c.ctx.Err() != nil {
				return nil, renewlock.ErrClientClosed
			}
			return nil, ferr
		}
		if !errors.Is(ferr, renewlock.ErrNotAcquired) {
			last = ferr
		}
		if ctx.Err() != nil {
			drop()
			return nil, c.ctxError(ctx, key, last)
		}
		if g := have[gm]; g == nil || g.Err() != nil || f.writeBack || f.reachable < c.quorum {
			drop() // not next in line (any more), or cut off from a quorum
		}
		if g := have[gm]; g != nil {
			// Next in line: keep the gate (others yield to it), and wait
			// in the queue of a master the holder has, to be handed it
			// when the holder releases; without one (masters failing),
			// ask again after a while.
			var wait *master
			for _, m := range f.heldOn {
				if have[m] == nil {
					wait = m
					break
				}
			}
			if wait != nil {
				if hl := c.waitHeld(ctx, g, wait, key, opts, set); hl != nil {
					have[wait] = hl
				}
				continue
			}
			if err := c.sleep(ctx, jitter(gateBackoff)); err != nil {
				drop()
				return nil, c.ctxError(ctx, key, last)
			}
			gateBackoff = min(2*gateBackoff, maxWait)
			continue
		}
		gateBackoff = minGateBackoff
		if f.gateHeld {
			if g := c.waitGate(ctx, gm, key, opts, set); g != nil {
				have[gm] = g
			}
			continue
		}
		if err := c.sleep(ctx, jitter(backoff)); err != nil {
			return nil, c.ctxError(ctx, key, last)
		}
		backoff = min(2*backoff, maxWait)
	}
}

// waitHeld waits, for a waiter that holds the gate, in the queue of master
// m until its holder releases it to this waiter, and returns m's lock; nil
// if the wait ended first. It ends when the gate is lost (another waiter
// may be next in line then), and after one to two renew intervals, in case
// m is the master in trouble.
//
// Only the gate's holder waits in the queue of another master, so two
// waiters that each hold a minority never wait for each other.
func (c *Client) waitHeld(ctx context.Context, gate *renewlock.Lock, m *master, key string, opts []renewlock.Option, set bridge.Settings) *renewlock.Lock {
	gctx, stop := gate.Context(ctx)
	defer stop()
	wctx, cancel := context.WithTimeout(gctx, jitter(2*set.Interval))
	defer cancel()
	l, err := m.rl.Acquire(wctx, key, opts...)
	if err != nil {
		return nil
	}
	return l
}

// waitGate waits in the queue of key's gate master gm until the holder
// there releases it to this waiter, and returns the gate's lock; nil if
// the wait ended first. The wait is bounded (one to two renew intervals),
// in case the gate master is the one in trouble while the others are
// free.
func (c *Client) waitGate(ctx context.Context, gm *master, key string, opts []renewlock.Option, set bridge.Settings) *renewlock.Lock {
	c.mu.Lock()
	c.queued[key]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.queued[key]--; c.queued[key] == 0 {
			delete(c.queued, key)
		}
		c.mu.Unlock()
	}()
	wctx, cancel := context.WithTimeout(ctx, jitter(2*set.Interval))
	defer cancel()
	g, err := gm.rl.Acquire(wctx, key, opts...)
	if err != nil {
		return nil
	}
	return g
}

// queuedFor returns how many of this Client's Acquire calls wait in the
// queue of key's gate.
func (c *Client) queuedFor(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued[key]
}

// ctxError is Acquire's error when ctx ended (or the Client closed).
func (c *Client) ctxError(ctx context.Context, key string, last error) error {
	if c.ctx.Err() != nil && ctx.Err() == nil {
		return renewlock.ErrClientClosed
	}
	if last != nil {
		return fmt.Errorf("redlock: acquire %q: %w (last attempt: %v)", key, ctx.Err(), last)
	}
	return fmt.Errorf("redlock: acquire %q: %w", key, ctx.Err())
}

// gate returns the master whose queue the waiters for key wait in.
func (c *Client) gate(key string) *master {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return c.masters[int(h.Sum32()%uint32(len(c.masters)))]
}

// releaseHeld releases a lock held on one master between attempts,
// waiting for it so that the next attempt does not find it held by itself.
func (c *Client) releaseHeld(g *renewlock.Lock, set bridge.Settings) {
	ctx, cancel := context.WithTimeout(context.Background(), min(set.TTL, closeTimeout))
	defer cancel()
	_ = g.Release(ctx)
}

// sleep waits d, or until ctx ends (its error) or the Client closes.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return renewlock.ErrClientClosed
	}
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// spawn runs f in a goroutine that Close waits for; once Close has begun,
// in the caller.
func (c *Client) spawn(f func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		f()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// track runs f in the calling goroutine unless Close has begun, in a way
// Close waits for.
func (c *Client) track(f func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	f()
}

// register records a lock that is about to be handed out; false if the
// Client is closing.
func (c *Client) register(l *Lock) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.locks[l] = struct{}{}
	return true
}

func (c *Client) forget(l *Lock) {
	c.mu.Lock()
	delete(c.locks, l)
	c.mu.Unlock()
}

// Close stops all background work of the Client and releases every lock it
// still holds, on every master. Each such lock's Done is closed at once,
// before anything is sent, and its Err is renewlock.ErrClientClosed;
// blocked Acquire calls return ErrClientClosed. Close returns within a few
// seconds even if masters do not answer (locks it could not release there
// expire after their TTL). It does not close the masters' go-redis clients,
// and is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		locks := make([]*Lock, 0, len(c.locks))
		for l := range c.locks {
			locks = append(locks, l)
		}
		clear(c.locks)
		c.mu.Unlock()
		c.cancel()
		for _, l := range locks {
			l.closed()
		}
		errs := make([]error, len(c.masters))
		var wg sync.WaitGroup
		for i, m := range c.masters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.rl.Close(); err != nil {
					errs[i] = fmt.Errorf("%s: %w", m.name, err)
				}
			}()
		}
		wg.Wait()
		c.wg.Wait()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
