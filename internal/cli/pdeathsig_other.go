//go:build unix && !linux && !freebsd

package cli

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
