//go:build windows

package cli

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

func sysSignalName(syscall.Signal) string { return "" }

func configureChild(*exec.Cmd, bool) {}

// signalChild approximates signals on Windows: termination requests end the
// process at once; others are not supported.
func signalChild(p *os.Process, _ bool, sig syscall.Signal) error {
	switch sig {
	case syscall.SIGTERM, syscall.SIGKILL, syscall.SIGINT, syscall.SIGHUP:
		return p.Kill()
	}
	return p.Signal(sig)
}

// canPause says whether pauseProcess works here.
const canPause = false

func pauseProcess(*os.Process) error  { return errors.ErrUnsupported }
func resumeProcess(*os.Process) error { return errors.ErrUnsupported }
