//go:build unix && !linux

package cli

import (
	"os"
	"syscall"
)

// Without /proc, renewlock finds no descendants: the command always gets
// its own process group, and only the group is signalled.

const canShareGroup = false

const subreaper = false

func becomeSubreaper() error { return nil }

type proc struct{ pid, pgrp int }

func descendants() []proc { return nil }

func sharesGroup(int, *os.File, *os.File) bool { return false }

func (proc) signal(syscall.Signal) {}

// isStopped cannot tell here; a stop event was seen.
func isStopped(int) bool { return true }
