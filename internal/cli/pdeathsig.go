//go:build linux || freebsd

package cli

import "syscall"

// setParentDeathSignal makes the kernel send SIGKILL to the command when the
// thread that started it exits: renewlock starts it from a goroutine locked
// to its OS thread for the command's lifetime, so that is when renewlock
// exits. The child re-checks its parent right after setting this (Go's
// forkExec does, as prctl(2) advises), so a parent that dies during the fork
// is not missed.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
