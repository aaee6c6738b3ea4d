//go:build unix && !linux && !freebsd

package redisserver

import "syscall"

// SetParentDeathSignal does nothing here: this platform has no parent-death
// signal, so Stop must be called.
func SetParentDeathSignal(*syscall.SysProcAttr) {}
