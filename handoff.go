package renewlock

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Hand-off: how a lock passes from one holder to the next. The release
// script (release.lua) does it in Redis, in the same step that checks the
// releasing owner: the first live waiter of the queue becomes the holder,
// with a new owner id (its own), a new fencing token and a lease that ends
// where its place in the queue would have (one TTL after its last
// renewal: a waiter that died meanwhile holds the lock no longer). Its
// Client learns of it in one of three ways:
//   - the waiter is in the releasing Client: the release's reply names it
//     (no message is published), and the lock is handed over at once;
//   - it is in another Client: Redis publishes "<id> <token>" on that
//     Client's channel (wait.go);
//   - the message was lost: the waiter's next renewal finds it holds the
//     lock (renew.go).
// In the first two cases the new holder's deadline counts from the send
// time of the last reply that found the waiter queued — the call that set
// where its lease ends — and the renewal loop renews the lock from then on.
// Either way Redis does the same work per hand-off however many clients
// wait, and no client clock is involved.

// releaseResult is the reply of release.lua.
type releaseResult struct {
	ours      bool // it held the lock (or the queue entry), now released
	handedOff bool // the lock went straight to the next waiter
}

// releaseCall runs the release script of le's kind: it releases the lock
// le holds, or takes le out of the queue. A grant to a waiter of this
// Client comes back in the reply and is handed over here, also when the
// caller gave up (ctx ended) with the call on the wire.
func (c *Client) releaseCall(ctx context.Context, le *lease) (releaseResult, error) {
	cmd, pending := c.co.run(ctx, le.kind.release(), []string{le.rkey}, []any{le.id, c.hub.mine(le.rkey)},
		func(cmd *redis.Cmd) { _, _ = c.releaseReply(cmd, le.rkey) })
	if pending {
		return releaseResult{}, cmd.Err()
	}
	return c.releaseReply(cmd, le.rkey)
}

// releaseReply decodes the reply of a release — {code,
// handed, token, id, token, id, …}: code 1 released, 3 left the queue, 0
// neither; handed 1 if the lock (or some room in it) went to waiters; then
// the waiters of this Client that got it — and hands those locks over.
func (c *Client) releaseReply(cmd *redis.Cmd, rkey string) (releaseResult, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return releaseResult{}, classify(err, rkey)
	}
	if len(vals) < 2 || len(vals)%2 != 0 {
		return releaseResult{}, fmt.Errorf("renewlock: release script returned %v", vals)
	}
	code, _ := vals[0].(int64)
	handed, _ := vals[1].(int64)
	for i := 2; i+1 < len(vals); i += 2 {
		token, _ := vals[i].(int64)
		next, _ := vals[i+1].(string)
		c.eng.granted(next, uint64(token))
	}
	return releaseResult{ours: code == 1 || code == 3, handedOff: handed == 1}, nil
}
