//go:build linux || freebsd

package redisserver

import "syscall"

// SetParentDeathSignal makes the kernel kill the server when the thread
// that started it exits, so a crashed or killed owner leaves no server
// behind. (Go exits threads only for goroutines that locked them, so in
// practice that is when the owning process exits.)
func SetParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
