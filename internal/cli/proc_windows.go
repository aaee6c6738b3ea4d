//go:build windows

package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func sysSignalName(syscall.Signal) string { return "" }

// child is the running command. Windows has no signals or process groups:
// termination requests end the command at once, and processes it started
// are not tracked.
type child struct {
	cmd            *exec.Cmd
	sharedKeyboard bool
	exited         chan childExit
	stopped        chan syscall.Signal // never
	conts          chan os.Signal      // never
}

type childExit struct {
	code int
	how  string
	err  error
}

func newChild(cmd *exec.Cmd, _, _, _ *os.File, _ chan<- os.Signal) *child {
	return &child{cmd: cmd, exited: make(chan childExit, 1)}
}

func (ch *child) start() error {
	if err := ch.cmd.Start(); err != nil {
		return err
	}
	go func() {
		_ = ch.cmd.Wait()
		code := ch.cmd.ProcessState.ExitCode()
		ch.exited <- childExit{code: code, how: fmt.Sprintf("the command exited with status %d", code)}
	}()
	return nil
}

func (ch *child) ended() {}

// forward approximates signals: termination requests end the process at
// once; others are not supported.
func (ch *child) forward(sig syscall.Signal) error {
	switch sig {
	case syscall.SIGTERM, syscall.SIGKILL, syscall.SIGINT, syscall.SIGHUP:
		return ch.cmd.Process.Kill()
	}
	return ch.cmd.Process.Signal(sig)
}

func (ch *child) terminate()               { _ = ch.cmd.Process.Kill() }
func (ch *child) killAll()                 { _ = ch.cmd.Process.Kill() }
func (ch *child) onStopped(syscall.Signal) {}

func (ch *child) onContinued() bool { return false }
func (ch *child) resume(bool)       {}

func configureChild(*exec.Cmd, bool) {}

// canPause says whether pauseProcess works here.
const canPause = false

func pauseProcess(*os.Process) error  { return errors.ErrUnsupported }
func resumeProcess(*os.Process) error { return errors.ErrUnsupported }
