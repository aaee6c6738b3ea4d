//go:build unix && !linux && !freebsd

package cli

import "syscall"

// parentDeathSignal reports whether the kernel kills the command when
// renewlock dies. This platform has no parent-death signal: if renewlock is
// killed with SIGKILL, the command keeps running without a lease.
const parentDeathSignal = false

func setParentDeathSignal(*syscall.SysProcAttr) {}
