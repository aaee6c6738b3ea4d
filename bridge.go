package renewlock

import "github.com/renewlock/renewlock/internal/bridge"

// What the packages built on this engine (redlock) need of it, handed over
// through internal/bridge so that none of it is public API.
func init() {
	bridge.LockOwner = func(lock any) (string, string) {
		l := lock.(*Lock)
		return l.le.rkey, l.le.id
	}
	bridge.Resolve = func(client any, opts any) (bridge.Settings, error) {
		c := client.(*Client)
		cfg := c.cfg
		if o, _ := opts.([]Option); len(o) > 0 {
			cfg.apply(o)
			if err := cfg.validate(); err != nil {
				return bridge.Settings{}, err
			}
		}
		return bridge.Settings{
			TTL: cfg.ttl, Interval: cfg.interval(), Validity: cfg.validity(),
			Prefix: cfg.prefix, Logger: cfg.logger,
		}, nil
	}
	bridge.Classify = classify
}
