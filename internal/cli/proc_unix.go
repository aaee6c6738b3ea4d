//go:build unix

package cli

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

func sysSignalName(s syscall.Signal) string { return unix.SignalName(s) }

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

// canPause says whether pauseProcess works here.
const canPause = true

// pauseProcess stops p (SIGSTOP) as a long GC pause or a frozen VM would.
func pauseProcess(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// resumeProcess continues a paused p (SIGCONT).
func resumeProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
