//go:build unix

package cli

import (
	"os"
	"os/exec"
	"syscall"
)

// configureChild puts the command in its own process group when ownGroup
// is set, so that SIGTERM and SIGKILL reach everything it started, and asks
// the kernel to kill it if renewlock dies (where supported).
func configureChild(cmd *exec.Cmd, ownGroup bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: ownGroup}
	setParentDeathSignal(cmd.SysProcAttr)
}

// signalChild sends sig to the command, or to its whole process group.
func signalChild(p *os.Process, group bool, sig syscall.Signal) error {
	if group {
		return syscall.Kill(-p.Pid, sig)
	}
	return p.Signal(sig)
}
