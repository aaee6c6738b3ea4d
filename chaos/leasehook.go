package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// LeaseHook is a go-redis hook for a lock client that records, from the
// wire, every lease Redis confirmed: a script reply that pairs code 1 with
// a key's token ({1, token} from an acquisition, {1, token, …} per key
// from a renewal) means Redis set that lease to end one TTL after it ran
// the call, so no earlier than one TTL after the call was sent. Each such
// reply becomes a Sample, a lower bound of the key's expiry just like the
// observer's PTTL readings.
//
// The observer alone can miss the last extension of a lease: one that
// Redis ran just before it was paused (SIGSTOP), after the observer's last
// look, whose reply still reached the client. Its sampler is then stuck
// on the paused server, and check (c) would compare the holder's loss with
// an expiry one renew interval too early (the Redlock suite failed so, a
// loss "225 ms after Redis could expire the key", with every master's
// sampler of its own).
type LeaseHook struct {
	H      *History
	Prefix string        // the key prefix of the locks
	TTL    time.Duration // the TTL every lock is taken with
}

func (*LeaseHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *LeaseHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		sent := workload.Mono()
		err := next(ctx, cmd)
		h.record(sent, cmd)
		return err
	}
}

func (h *LeaseHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		sent := workload.Mono()
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			h.record(sent, cmd)
		}
		return err
	}
}

// record turns a script reply into samples: for KEYS[i], the reply's
// elements 2i and 2i+1 are its code and token.
func (h *LeaseHook) record(sent int64, cmd redis.Cmder) {
	name := cmd.Name()
	if (name != "evalsha" && name != "eval") || cmd.Err() != nil {
		return
	}
	c, ok := cmd.(*redis.Cmd)
	if !ok {
		return
	}
	vals, err := c.Slice()
	if err != nil {
		return
	}
	args := cmd.Args()
	if len(args) < 3 {
		return
	}
	n, err := strconv.Atoi(fmt.Sprint(args[2])) // an int from go-redis's Script
	if err != nil || len(args) < 3+n || len(vals) != 2*n {
		// Only replies of exactly two values per key: an acquisition or
		// a renewal. Not a release ({code, handed, grants…}, whose code 1
		// pairs with handed 0 or 1), nor the redlock write-back ({1,
		// token} for two keys), which extends no lease.
		return
	}
	for i := range n {
		code, ok1 := vals[2*i].(int64)
		token, ok2 := vals[2*i+1].(int64)
		key, ok3 := strings.CutPrefix(toString(args[3+i]), h.Prefix)
		if ok1 && ok2 && ok3 && code == 1 && token > 1 {
			h.H.Sample(Sample{Key: key, Sent: sent, Owned: true, Token: uint64(token), PTTL: h.TTL})
		}
	}
}

func toString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	default:
		return ""
	}
}
