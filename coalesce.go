package renewlock

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// maxFlights bounds the round trips a Client's acquire and release calls
// keep on the wire at once. Calls made while that many are in flight queue
// up and leave together in the next pipeline, so that many goroutines share
// round trips (fewer syscalls on both sides) instead of each taking a pooled
// connection of its own.
const maxFlights = 2

// coalescer sends script calls made concurrently by many goroutines in
// shared pipelines (group commit).
//
// A caller that finds a free flight sends its call itself, at no extra cost:
// like any go-redis call it is bounded by the client's read and write
// timeouts, and by ctx if the client has ContextTimeoutEnabled. Calls made
// while all flights are busy queue up and are sent by a flight goroutine,
// one per pipeline on the wire, each sending whatever queued while the
// previous one flew; a queued caller stops waiting the moment its ctx ends.
type coalescer struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	flights int
	queue   []*call
	closed  bool           // Client closed: no new flight goroutines
	wg      sync.WaitGroup // flight goroutines
}

func newCoalescer(rdb redis.UniversalClient) *coalescer {
	return &coalescer{rdb: rdb}
}

// A call is one script invocation waiting for its turn.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	// abandoned runs, in the sending goroutine, on the result of a call whose
	// caller gave up (ctx ended) after it was sent; nil for none.
	abandoned func(*redis.Cmd)

	cmd   *redis.Cmd
	state atomic.Int32  // callPending, callDone or callAbandoned
	done  chan struct{} // closed once cmd is set
}

const (
	callPending int32 = iota
	callDone
	callAbandoned
)

// run performs one script call, possibly in a pipeline with others. If ctx
// ends while the call is queued it returns a Cmd carrying ctx's error at
// once: a call that was never sent then never will be; one already sent
// gets its abandoned hook when its result arrives, and run reports that as
// pending, so that the caller leaves the result to the hook.
func (co *coalescer) run(ctx context.Context, script *redis.Script, keys []string, args []any, abandoned func(*redis.Cmd)) (cmd *redis.Cmd, pending bool) {
	co.mu.Lock()
	if co.flights < maxFlights && len(co.queue) == 0 {
		co.flights++
		co.mu.Unlock()
		// Alone: send directly, in this goroutine.
		cmd := script.Run(ctx, co.rdb, keys, args...)
		co.land()
		return cmd, false
	}
	c := &call{script: script, keys: keys, args: args, abandoned: abandoned, done: make(chan struct{})}
	co.queue = append(co.queue, c)
	co.mu.Unlock()

	select {
	case <-c.done:
		return c.cmd, false
	case <-ctx.Done():
	}
	co.mu.Lock()
	for i, q := range co.queue {
		if q == c { // never sent: withdraw it
			co.queue = append(co.queue[:i], co.queue[i+1:]...)
			co.mu.Unlock()
			return ctxCmd(ctx), false
		}
	}
	co.mu.Unlock()
	if c.abandoned != nil && c.state.CompareAndSwap(callPending, callAbandoned) {
		return ctxCmd(ctx), true // on the wire: its sender takes care of the result
	}
	<-c.done
	return c.cmd, false
}

// fly sends batch, then whatever queued meanwhile, until the queue is empty.
func (co *coalescer) fly(batch []*call) {
	defer co.wg.Done()
	co.send(batch)
	co.land()
}

// send sends batch as one pipeline and delivers the results.
func (co *coalescer) send(batch []*call) {
	// Not any caller's ctx: one caller giving up must not fail the others.
	cmds := evalPipelined(context.Background(), co.rdb, len(batch), func(i int) (*redis.Script, []string, []any) {
		return batch[i].script, batch[i].keys, batch[i].args
	})
	for i, c := range batch {
		c.cmd = cmds[i]
	}
	for _, c := range batch {
		if c.state.CompareAndSwap(callPending, callDone) {
			close(c.done)
		} else if c.abandoned != nil {
			c.abandoned(c.cmd)
		}
	}
}

// land ends a flight. Calls that queued meanwhile take off together in a
// new flight goroutine; once the Client is closed, in this one.
func (co *coalescer) land() {
	for {
		co.mu.Lock()
		if len(co.queue) == 0 {
			co.flights--
			co.mu.Unlock()
			return
		}
		batch := co.queue
		co.queue = nil
		if !co.closed {
			co.wg.Add(1)
			co.mu.Unlock()
			go co.fly(batch)
			return
		}
		co.mu.Unlock()
		co.send(batch)
	}
}

// close waits for the flights on the wire; later calls fly in their callers.
func (co *coalescer) close() {
	co.mu.Lock()
	co.closed = true
	co.mu.Unlock()
	co.wg.Wait()
}

func ctxCmd(ctx context.Context) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(ctx.Err())
	return cmd
}
