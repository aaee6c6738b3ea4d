package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// A partition of one client from a replicated topology (GUARANTEES.md,
// column "partition of one client"): the holder's go-redis client loses
// every connection — to every data node and every Sentinel — as in a black
// hole (no reset: writes vanish, reads wait for their deadline, new dials
// time out), while another client, not cut off, waits for the same key.
// The holder must be told of the loss (Done, ErrLeaseLost) before the
// other client gets the key, and before Redis could expire its lease; the
// newcomer's token must be larger, so a fenced resource refuses the old
// holder's late writes.

// partitionRounds is how many keys each variant takes, in sequence, on one
// topology; the cut falls at a different phase of the renew interval in
// each (see phase).
const partitionRounds = 3

// partition cuts every connection of the go-redis client whose Dialer is
// its dial. While cut: writes pretend success and discard the bytes; reads
// wait until the read deadline (a timeout) or Close; new dials wait until
// their context ends (a timeout). Once healed, new connections work; the
// ones from before the cut fail at once (as if reset when the path came
// back), so the client replaces them.
type partition struct {
	mu      sync.Mutex
	cut     bool
	epoch   int           // incremented at every cut: a connection of an older epoch is dead
	changed chan struct{} // closed and replaced at every cut and heal
	stop    chan struct{} // closed when the test ends: nothing waits past it
}

func newPartition(t testing.TB) *partition {
	p := &partition{changed: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(func() { close(p.stop) })
	return p
}

// set cuts (true) or heals (false).
func (p *partition) set(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == cut {
		return
	}
	p.cut = cut
	if cut {
		p.epoch++
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// The states of a connection.
const (
	connUp    = iota
	connHole  // cut: a black hole
	connReset // from before a cut that has healed: fails at once
)

func (p *partition) state(epoch int) (int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cut:
		return connHole, p.changed
	case epoch != p.epoch:
		return connReset, p.changed
	}
	return connUp, p.changed
}

func timeoutErr(op, network, addr string) error {
	return &net.OpError{Op: op, Net: network, Addr: strAddr{network, addr}, Err: os.ErrDeadlineExceeded}
}

type strAddr struct{ network, addr string }

func (a strAddr) Network() string { return a.network }
func (a strAddr) String() string  { return a.addr }

// dial is the go-redis Dialer of the client cut off.
func (p *partition) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	for {
		p.mu.Lock()
		cut, epoch, changed := p.cut, p.epoch, p.changed
		p.mu.Unlock()
		if cut {
			select {
			case <-ctx.Done():
				return nil, timeoutErr("dial", network, addr)
			case <-p.stop:
				return nil, timeoutErr("dial", network, addr)
			case <-changed:
				continue // healed: the handshake goes through
			}
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if st, _ := p.state(epoch); st == connUp {
			return &cutConn{Conn: raw, p: p, epoch: epoch, network: network, addr: addr,
				closed: make(chan struct{}), dlChanged: make(chan struct{})}, nil
		}
		_ = raw.Close() // cut while dialing: never established
	}
}

// cutConn is a connection of the client cut off.
type cutConn struct {
	net.Conn // only net.Conn's methods: go-redis must not reach the socket under it
	p        *partition
	epoch    int
	network  string
	addr     string

	closeOnce sync.Once
	closed    chan struct{}

	mu        sync.Mutex
	readDL    time.Time
	dlChanged chan struct{} // closed and replaced when readDL changes
}

func (c *cutConn) resetErr(op string) error {
	return &net.OpError{Op: op, Net: c.network, Addr: strAddr{c.network, c.addr}, Err: syscall.ECONNRESET}
}

func (c *cutConn) Read(b []byte) (int, error) {
	for {
		st, changed := c.p.state(c.epoch)
		switch st {
		case connReset:
			return 0, c.resetErr("read")
		case connHole:
			if err := c.hole(changed); err != nil {
				return 0, err
			}
			continue // the state changed: look again
		}
		n, err := c.Conn.Read(b)
		if st, _ := c.p.state(c.epoch); st == connUp {
			return n, err
		}
		// Cut while reading: what arrived is dropped, and the read goes
		// on in the black hole (it ends at the deadline or on Close).
	}
}

// hole waits, as a read from a black hole, for the read deadline (a
// timeout), Close, or the partition to change (nil).
func (c *cutConn) hole(changed <-chan struct{}) error {
	for {
		c.mu.Lock()
		dl, dlChanged := c.readDL, c.dlChanged
		c.mu.Unlock()
		var expire <-chan time.Time
		var timer *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return timeoutErr("read", c.network, c.addr)
			}
			timer = time.NewTimer(d)
			expire = timer.C
		}
		var err error
		again := false
		select {
		case <-expire:
			err = timeoutErr("read", c.network, c.addr)
		case <-c.closed:
			err = net.ErrClosed
		case <-changed:
		case <-dlChanged:
			again = true
		}
		if timer != nil {
			timer.Stop()
		}
		if !again {
			return err
		}
	}
}

func (c *cutConn) Write(b []byte) (int, error) {
	switch st, _ := c.p.state(c.epoch); st {
	case connHole:
		return len(b), nil // into the black hole
	case connReset:
		return 0, c.resetErr("write")
	}
	return c.Conn.Write(b)
}

func (c *cutConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *cutConn) setReadDL(t time.Time) {
	c.mu.Lock()
	c.readDL = t
	close(c.dlChanged)
	c.dlChanged = make(chan struct{})
	c.mu.Unlock()
}

func (c *cutConn) SetDeadline(t time.Time) error {
	c.setReadDL(t)
	return c.Conn.SetDeadline(t)
}

func (c *cutConn) SetReadDeadline(t time.Time) error {
	c.setReadDL(t)
	return c.Conn.SetReadDeadline(t)
}

// extendHook records when the last command that may have set or extended
// a lease was sent, among those that were answered without error: script
// calls and pipelines (renewals travel in pipelines; acquisitions are
// scripts, or pipelines with WAIT). Redis ran them no earlier than they
// were sent, so the lease there ends no earlier than that send + TTL.
type extendHook struct {
	mu   sync.Mutex
	last time.Time
}

func (h *extendHook) record(start time.Time) {
	h.mu.Lock()
	if start.After(h.last) {
		h.last = start
	}
	h.mu.Unlock()
}

func (h *extendHook) lastExtended() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

func (*extendHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *extendHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		if n := strings.ToLower(cmd.Name()); err == nil && (n == "evalsha" || n == "eval") {
			h.record(start)
		}
		return err
	}
}

func (h *extendHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		if err == nil && len(cmds) > 0 && cmds[0].Err() == nil {
			h.record(start)
		}
		return err
	}
}

// fencedRegister is a resource that refuses tokens below the largest it
// accepted.
type fencedRegister struct {
	mu  sync.Mutex
	max uint64
}

func (r *fencedRegister) write(token uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if token < r.max {
		return false
	}
	r.max = token
	return true
}

// partitionTopology is one topology the test cuts a client off from.
type partitionTopology struct {
	name     string
	variants []foVariant
	// newA returns the go-redis client of the holder: its dials go through
	// p, and h sees every command it sends (to every node).
	newA func(p *partition, h *extendHook) redis.UniversalClient
	// newB returns a go-redis client not cut off.
	newB func() redis.UniversalClient
}

// partitionResult is what one round measured, relative to the cut.
type partitionResult struct {
	told, lead, taken time.Duration
}

func TestFailoverPartitionOneClient(t *testing.T) {
	settleDialers(t)
	results := map[string][]partitionResult{}
	var order []string
	run := func(t *testing.T, topo partitionTopology) {
		for _, v := range topo.variants {
			name := topo.name + ", " + v.name
			order = append(order, name)
			for round := range partitionRounds {
				r := partitionRound(t, topo, v, round)
				results[name] = append(results[name], r)
				t.Logf("%s, round %d: told %v after the cut, lead %v before Redis could expire the key, B got it %v after the cut (%v after A was told)",
					name, round+1, r.told.Round(time.Millisecond), r.lead.Round(time.Millisecond), r.taken.Round(time.Millisecond),
					(r.taken - r.told).Round(time.Millisecond))
				if t.Failed() {
					return
				}
			}
		}
	}
	t.Run("sentinel", func(t *testing.T) {
		g := redistest.StartSentinels(t, redistest.SentinelConfig{})
		run(t, partitionTopology{
			name:     "sentinel",
			variants: []foVariant{noAck(), ackN(2, 2)},
			newA: func(p *partition, h *extendHook) redis.UniversalClient {
				rdb := g.FailoverClient(func(o *redis.FailoverOptions) { o.Dialer = p.dial })
				rdb.AddHook(h)
				return rdb
			},
			newB: func() redis.UniversalClient { return g.FailoverClient() },
		})
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartClusterWith(t, redistest.ClusterConfig{Masters: 3, Replicas: 1})
		run(t, partitionTopology{
			name:     "cluster",
			variants: []foVariant{noAck(), ackN(1, 1)},
			newA: func(p *partition, h *extendHook) redis.UniversalClient {
				rdb := c.Client(func(o *redis.ClusterOptions) { o.Dialer = p.dial })
				// Commands (also the acknowledged ones, sent to a node's
				// client directly) run the hooks of the node clients.
				rdb.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
				return rdb
			},
			newB: func() redis.UniversalClient { return c.Client() },
		})
	})
	for _, name := range order {
		rs := results[name]
		if len(rs) == 0 {
			continue
		}
		span := func(f func(partitionResult) time.Duration) string {
			var d []time.Duration
			for _, r := range rs {
				d = append(d, f(r))
			}
			slices.Sort(d)
			return fmt.Sprintf("%v–%v", d[0].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
		}
		t.Logf("SUMMARY %s, %d rounds: told %s after the cut, lead %s, B got the key %s after the cut (%s after A was told)", name, len(rs),
			span(func(r partitionResult) time.Duration { return r.told }),
			span(func(r partitionResult) time.Duration { return r.lead }),
			span(func(r partitionResult) time.Duration { return r.taken }),
			span(func(r partitionResult) time.Duration { return r.taken - r.told }))
	}
}

// partitionRound takes a key with a client A, makes a client B wait for
// it, cuts A off after about two renew intervals, and checks that A is told
// before B gets the key and before Redis could expire A's lease, and that
// the fencing token protects a resource from A's late write.
func partitionRound(t *testing.T, topo partitionTopology, v foVariant, round int) partitionResult {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	p := newPartition(t)
	h := &extendHook{}
	rdbA := topo.newA(p, h)
	rdbB := topo.newB()
	opts := append([]renewlock.Option{renewlock.WithTTL(foTTL), renewlock.WithSafetyMargin(foMargin)}, v.opts...)
	a := newClient(t, rdbA, opts...)
	b := newClient(t, rdbB, opts...)
	defer func() {
		_ = a.Close()
		_ = b.Close()
		_ = rdbA.Close()
		_ = rdbB.Close()
	}()
	key := uniqueKey(t)
	var reg fencedRegister

	la, err := a.Acquire(ctx, key)
	if err != nil {
		t.Fatalf("A: Acquire: %v", err)
	}
	if !reg.write(la.Token()) {
		t.Fatal("the register refused A's first write")
	}
	toldC := make(chan time.Time, 1)
	go func() {
		<-la.Done() // closes at the latest when A is closed
		toldC <- time.Now()
	}()
	type taken struct {
		l   *renewlock.Lock
		err error
		at  time.Time
	}
	takenC := make(chan taken, 1)
	go func() {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		l, err := b.Acquire(bctx, key)
		takenC <- taken{l, err, time.Now()}
	}()

	// Renewals under way; the cut falls at a different phase of the renew
	// interval (TTL/3) in each round.
	interval := foTTL / 3
	time.Sleep(2*interval + time.Duration(round%3)*interval/3)
	select {
	case tk := <-takenC:
		t.Fatalf("B's Acquire returned while A held the key: %v, %v", tk.l, tk.err)
	default:
	}
	if la.Err() != nil {
		t.Fatalf("A lost the lock before the cut: %v", la.Err())
	}
	if h.lastExtended().IsZero() {
		t.Fatal("the hook saw no acquisition or renewal of A")
	}
	cutAt := time.Now()
	p.set(true)
	healed := false
	heal := func() {
		if !healed {
			p.set(false)
			healed = true
		}
	}
	defer heal()

	var toldAt time.Time
	select {
	case toldAt = <-toldC:
	case <-time.After(time.Until(cutAt.Add(2 * foTTL))):
		t.Fatalf("A not told within 2×TTL of the cut (Err %v)", la.Err())
	}
	last := h.lastExtended()
	if !errors.Is(la.Err(), renewlock.ErrLeaseLost) {
		t.Errorf("A's Err after the cut = %v, want ErrLeaseLost", la.Err())
	}
	var tk taken
	select {
	case tk = <-takenC:
	case <-time.After(15 * time.Second):
		t.Fatal("B's Acquire did not return")
	}
	if tk.err != nil {
		t.Fatalf("B: Acquire: %v", tk.err)
	}
	res := partitionResult{told: toldAt.Sub(cutAt), lead: last.Add(foTTL).Sub(toldAt), taken: tk.at.Sub(cutAt)}
	if !toldAt.Before(tk.at) {
		t.Errorf("two valid holders: A told %v after the cut, B got the key %v after it", res.told, res.taken)
	}
	if res.lead <= 0 {
		t.Errorf("A told %v after Redis could expire its lease (last acquisition or renewal sent %v before the cut)",
			-res.lead, cutAt.Sub(last))
	}
	if tk.l.Token() <= la.Token() {
		t.Errorf("B's token %d is not above A's %d", tk.l.Token(), la.Token())
	}
	if !reg.write(tk.l.Token()) {
		t.Error("the register refused B's write")
	}
	if reg.write(la.Token()) {
		t.Error("the register accepted A's stale write after B's")
	}

	heal()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = la.Release(rctx)
	cancel()
	switch {
	case !errors.Is(err, renewlock.ErrLeaseLost):
		t.Errorf("A's Release after the heal = %v, want ErrLeaseLost", err)
	case err != la.Err():
		// Still ErrLeaseLost, joined with why Redis did not answer.
		t.Logf("A's Release after the heal did not reach Redis: %v", err)
	}
	// A's Release did not touch B's lock.
	if err := tk.l.Err(); err != nil {
		t.Errorf("B's lock ended after A's Release: %v", err)
	}
	if err := tk.l.Release(ctx); err != nil {
		t.Errorf("B's Release: %v", err)
	}
	return res
}
