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
// shared pipelines. It needs no goroutine of its own: the caller that finds
// a free flight sends, and on its way out hands whatever queued meanwhile to
// the first queued caller, which sends that as one pipeline, and so on. A
// lone caller sends its call directly, at no extra cost.
type coalescer struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	flights int
	queue   []*call
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
	lead  chan []*call  // the batch this caller must send
}

const (
	callPending int32 = iota
	callDone
	callAbandoned
)

// run performs one script call, possibly in a pipeline with others. If ctx
// ends first it returns a Cmd carrying ctx's error; a call that was never
// sent then never will be, and one already sent gets its abandoned hook.
func (co *coalescer) run(ctx context.Context, script *redis.Script, keys []string, args []any, abandoned func(*redis.Cmd)) *redis.Cmd {
	co.mu.Lock()
	if co.flights < maxFlights && len(co.queue) == 0 {
		co.flights++
		co.mu.Unlock()
		// Alone: send directly, under the caller's own ctx.
		cmd := script.Run(ctx, co.rdb, keys, args...)
		co.handOn()
		return cmd
	}
	c := &call{script: script, keys: keys, args: args, abandoned: abandoned,
		done: make(chan struct{}), lead: make(chan []*call, 1)}
	co.queue = append(co.queue, c)
	co.mu.Unlock()

	select {
	case <-c.done:
		return c.cmd
	case batch := <-c.lead:
		co.send(batch)
		return c.cmd
	case <-ctx.Done():
	}
	co.mu.Lock()
	for i, q := range co.queue {
		if q == c { // never sent: withdraw it
			co.queue = append(co.queue[:i], co.queue[i+1:]...)
			co.mu.Unlock()
			return ctxCmd(ctx)
		}
	}
	co.mu.Unlock()
	// Already taken into a batch: lead it if it was handed to us, else let
	// its sender deal with the result.
	select {
	case batch := <-c.lead:
		co.send(batch)
	default:
	}
	if c.state.CompareAndSwap(callPending, callAbandoned) {
		return ctxCmd(ctx)
	}
	<-c.done
	return c.cmd
}

// send sends batch as one pipeline, delivers the results, then hands on.
func (co *coalescer) send(batch []*call) {
	// Not any caller's ctx: one caller giving up must not fail the others.
	ctx := context.Background()
	pipe := co.rdb.Pipeline()
	for _, c := range batch {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	var retry []*call
	for _, c := range batch {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 { // EVAL loads the script for next time
		pipe := co.rdb.Pipeline()
		for _, c := range retry {
			c.cmd = c.script.Eval(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for _, c := range batch {
		if c.state.CompareAndSwap(callPending, callDone) {
			close(c.done)
		} else if c.abandoned != nil {
			c.abandoned(c.cmd)
		}
	}
	co.handOn()
}

// handOn ends a flight: the calls queued meanwhile go to the first of them
// to send as one batch. The hand-over happens under co.mu, so a caller that
// gives up and finds itself no longer queued knows it may have been chosen.
func (co *coalescer) handOn() {
	co.mu.Lock()
	defer co.mu.Unlock()
	if len(co.queue) == 0 {
		co.flights--
		return
	}
	batch := co.queue
	co.queue = nil
	batch[0].lead <- batch // buffered: never blocks
}

func ctxCmd(ctx context.Context) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(ctx.Err())
	return cmd
}
