package renewlock

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hand-off: how a lock passes from one holder to the next. The release
// script (release.lua) does it in Redis, in the same step that checks the
// releasing owner: the first live waiter of the queue becomes the holder,
// with a new owner id (its own), a new fencing token and a lease of its
// TTL. Its Client learns of it in one of three ways:
//   - the waiter is in the releasing Client: the release's reply names it
//     (no message is published), and the lock is handed over at once, its
//     deadline counted from the release's send time;
//   - it is in another Client: Redis publishes "<id> <token>" on that
//     Client's channel (wait.go), and the deadline counts from the last
//     reply that found the waiter still queued (the grant came after it);
//   - the message was lost: the waiter's next renewal finds it holds the
//     lock (renew.go).
// Either way Redis does the same work per hand-off however many clients
// wait, and no client clock is involved.

// releaseResult is the reply of release.lua.
type releaseResult struct {
	ours      bool // it held the lock (or the queue entry), now released
	handedOff bool // the lock went straight to the next waiter
}

// releaseCall runs release.lua for (rkey, id): it releases the lock id
// holds, or takes id out of the queue. A grant to a waiter of this Client
// comes back in the reply and is handed over here, also when the caller
// gave up (ctx ended) with the call on the wire.
func (c *Client) releaseCall(ctx context.Context, rkey, id string) (releaseResult, error) {
	sent := time.Now()
	cmd, pending := c.co.run(ctx, releaseScript, []string{rkey}, []any{id, c.hub.channel},
		func(cmd *redis.Cmd) { _, _ = c.releaseReply(cmd, rkey, sent) })
	if pending {
		return releaseResult{}, cmd.Err()
	}
	return c.releaseReply(cmd, rkey, sent)
}

// releaseReply decodes the reply of a release sent at sent, and hands a
// lock it granted to one of this Client's waiters over to it.
func (c *Client) releaseReply(cmd *redis.Cmd, rkey string, sent time.Time) (releaseResult, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return releaseResult{}, classify(err, rkey)
	}
	code, ok := vals[0].(int64)
	if !ok || len(vals) < 2 {
		return releaseResult{}, fmt.Errorf("renewlock: release script returned %v", vals)
	}
	if code == 2 && len(vals) == 3 {
		token, _ := vals[1].(int64)
		next, _ := vals[2].(string)
		c.eng.granted(next, uint64(token), sent)
	}
	return releaseResult{ours: code != 0, handedOff: code == 2 || (code == 1 && vals[1] == int64(1))}, nil
}
