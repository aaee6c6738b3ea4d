package redlock

// GateOf returns the index of key's gate master.
func GateOf(c *Client, key string) int { return c.gate(key).i }
