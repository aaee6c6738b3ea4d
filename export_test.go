package renewlock

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
