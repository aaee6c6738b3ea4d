package renewlock

import "time"

// CrashForTest makes c stop all background work without releasing its
// locks, as if its process had died: leases stay in Redis until they expire.
func CrashForTest(c *Client) {
	c.closeOnce.Do(func() {
		c.cancel()
		c.hub.close()
		c.eng.stopLoop()
		c.eng.drain()
		c.closeErr = ErrClientClosed
	})
}

// ScriptSHA maps each script's name to its SHA1, so tests can tell which
// script a command runs.
var ScriptSHA = map[string]string{
	"acquire": acquireScript.Hash(),
	"release": releaseScript.Hash(),
	"renew":   renewScript.Hash(),
}

// WaitingIDsForTest returns the owner ids of c's leases that wait in the
// queue of key (as the Redis key rkey).
func WaitingIDsForTest(c *Client, rkey string) []string {
	c.eng.mu.Lock()
	defer c.eng.mu.Unlock()
	var ids []string
	for le := range c.eng.leases {
		if le.state == leaseWaiting && le.rkey == rkey {
			ids = append(ids, le.id)
		}
	}
	return ids
}

// GrantForTest delivers a grant of the lock to c's waiter id with token, as
// a pub/sub message would: a late one, say.
func GrantForTest(c *Client, id string, token uint64) { c.eng.granted(id, token) }

// SetShardIdleForTest sets how long Clients created from now on keep an
// idle slot's grant channel subscribed (shard.go), and returns a function
// that restores it.
func SetShardIdleForTest(d time.Duration) func() {
	old := shardIdle
	shardIdle = d
	return func() { shardIdle = old }
}

// ShardsForTest returns how many slots' grant channels c has open.
func ShardsForTest(c *Client) int {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	return len(c.hub.shards)
}
