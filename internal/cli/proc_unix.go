//go:build unix

package cli

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// How renewlock runs the command on Unix.
//
// The command gets a process group of its own, so that a signal to the
// group reaches every process of its pipelines and scripts at once (the
// kernel makes a group signal atomic with respect to fork). When
// renewlock's stdin, stdout or stderr is its controlling terminal, that
// group is made the terminal's foreground group (if renewlock's group was),
// as a shell with job control does for a job: the command reads the
// terminal, the keyboard's signals (Ctrl-C, Ctrl-\, Ctrl-Z) reach the
// command's group and not renewlock, and renewlock relays a stop of the
// command to the shell by stopping itself (and continues the command when
// it is continued), as sudo does. renewlock takes the terminal back when
// the command ends.
//
// One case keeps the command in renewlock's own group: on a terminal, when
// renewlock shares its process group with other processes or writes into a
// pipe (`renewlock run … | less`, or a script run without job control),
// since making the command the foreground group would stop those other
// processes when they touch the terminal. That needs the process walk below
// to stop the command's processes, so it is done on Linux only; elsewhere
// the command always gets its own group.
//
// On Linux renewlock is also a child subreaper (PR_SET_CHILD_SUBREAPER): a
// process the command started whose parent exits (a daemon's double fork)
// is re-parented to renewlock instead of init. Every process whose parent
// chain leads to renewlock was therefore started by the command, including
// those that left its group or session (setsid); on a lost lease renewlock
// finds them in /proc and signals each one, besides the group.

// child is the running command.
type child struct {
	cmd  *exec.Cmd
	pid  int
	pgid int  // the command's process group; 0 while it shares renewlock's
	pgrp int  // renewlock's process group
	tty  int  // the controlling terminal when renewlock does job control for the command, else -1
	fg   bool // the command's group was made the terminal's foreground group
	// sharedKeyboard: the command shares renewlock's group on a terminal, so
	// the keyboard's signals reach both; renewlock does not forward them.
	sharedKeyboard bool

	exited      chan childExit
	stopped     chan syscall.Signal // the command was stopped by this signal (job control only)
	conts       chan os.Signal      // SIGCONT to renewlock (job control only)
	waitingCont bool                // renewlock stopped itself for the command
}

// childExit is how the command ended.
type childExit struct {
	code int    // renewlock's exit status for it: N, or 128+N for signal N
	how  string // "the command exited with status N", "… was killed by SIGX"
	err  error  // waiting for it failed
}

// newChild prepares cmd to run as the command, given renewlock's stdin,
// stdout and stderr. sigs is renewlock's signal channel.
func newChild(cmd *exec.Cmd, stdin, stdout, stderr *os.File, sigs chan<- os.Signal) *child {
	ch := &child{cmd: cmd, pgrp: syscall.Getpgrp(), tty: -1, exited: make(chan childExit, 1)}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if fd, ok := controllingTerminal(stdin, stdout, stderr); ok {
		if canShareGroup && sharesGroup(ch.pgrp, stdout, stderr) {
			attr.Setpgid = false
			ch.sharedKeyboard = true
			// Ctrl-\ reaches the command and renewlock alike: it is for the
			// command, and must not end renewlock (Go's default for SIGQUIT).
			signal.Notify(sigs, syscall.SIGQUIT)
		} else {
			ch.tty = fd
			ch.stopped = make(chan syscall.Signal, 1)
			if fg, err := tcgetpgrp(fd); err == nil && fg == ch.pgrp {
				attr.Foreground, attr.Ctty, ch.fg = true, fd, true
			}
		}
	}
	setParentDeathSignal(attr)
	cmd.SysProcAttr = attr
	return ch
}

// controllingTerminal returns the descriptor of the first of files that is
// renewlock's controlling terminal.
func controllingTerminal(files ...*os.File) (int, bool) {
	for _, f := range files {
		if f == nil {
			continue
		}
		fd := int(f.Fd())
		if !term.IsTerminal(fd) {
			continue
		}
		if _, err := tcgetpgrp(fd); err == nil { // fails for a terminal that is not ours
			return fd, true
		}
	}
	return -1, false
}

func tcgetpgrp(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.TIOCGPGRP) }

func tcsetpgrp(fd, pgrp int) error { return unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, pgrp) }

// isPipe reports whether f is a pipe or FIFO.
func isPipe(f *os.File) bool {
	if f == nil {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeNamedPipe != 0
}

// start starts the command. The parent-death signal fires when the thread
// that forked the command exits, and the runtime ends a locked thread when
// its goroutine returns: so the command is forked from a locked thread that
// then waits for it, and is never unlocked.
func (ch *child) start() error {
	// Without it (Linux < 3.4, a seccomp filter) the command's orphans go
	// to init, out of reach, as on other systems.
	_ = becomeSubreaper()
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := ch.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		ch.wait(ch.cmd.Process.Pid)
	}()
	if err := <-started; err != nil {
		if ch.fg {
			// The child may have taken the terminal before its exec failed.
			signal.Ignore(syscall.SIGTTOU, syscall.SIGTTIN)
			if fg, err := tcgetpgrp(ch.tty); err == nil && fg != ch.pgrp {
				_ = tcsetpgrp(ch.tty, ch.pgrp)
			}
		}
		return err
	}
	ch.pid = ch.cmd.Process.Pid
	if ch.cmd.SysProcAttr.Setpgid || ch.cmd.SysProcAttr.Foreground {
		ch.pgid = ch.pid
	}
	if ch.tty >= 0 {
		// The command's group may own the terminal now: renewlock must be
		// able to write its messages (even with `stty tostop`) and take the
		// terminal back without being stopped. Set only now, so that the
		// command does not inherit the ignored signals.
		signal.Ignore(syscall.SIGTTOU, syscall.SIGTTIN)
		ch.conts = make(chan os.Signal, 1)
		signal.Notify(ch.conts, syscall.SIGCONT)
	}
	return nil
}

// wait reaps children until the command exits, reporting its stops when
// renewlock does job control. Other children are orphans of the command
// re-parented to renewlock (the subreaper): reaping them keeps them from
// lingering as zombies. renewlock starts no other children.
func (ch *child) wait(pid int) {
	who, flags := pid, 0
	if subreaper {
		who = -1
	}
	if ch.stopped != nil {
		flags = syscall.WUNTRACED
	}
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(who, &ws, flags, nil)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			ch.exited <- childExit{code: ExitSoftware, err: err}
			return
		case got != pid:
			continue
		case ws.Stopped():
			select {
			case ch.stopped <- ws.StopSignal():
			default:
			}
			continue
		case ws.Signaled():
			ch.exited <- childExit{code: ExitSignalBase + int(ws.Signal()), how: "the command was killed by " + signalName(ws.Signal())}
		default:
			ch.exited <- childExit{code: ws.ExitStatus(), how: fmt.Sprintf("the command exited with status %d", ws.ExitStatus())}
		}
		return
	}
}

// ended cleans up after the command exited: renewlock takes the terminal
// back if the command's group still has it.
func (ch *child) ended() {
	if ch.conts != nil {
		signal.Stop(ch.conts)
	}
	if ch.tty >= 0 && ch.pgid > 0 {
		if fg, err := tcgetpgrp(ch.tty); err == nil && fg == ch.pgid {
			_ = tcsetpgrp(ch.tty, ch.pgrp)
		}
	}
	_ = ch.cmd.Process.Release()
}

// forward passes a signal renewlock got on to the command's process group.
func (ch *child) forward(sig syscall.Signal) error {
	if ch.pgid > 0 {
		return syscall.Kill(-ch.pgid, sig)
	}
	// Sharing renewlock's group: the command and what it started that is
	// still in the group, as a group signal would.
	err := syscall.Kill(ch.pid, sig)
	for _, p := range descendants() {
		if p.pid != ch.pid && p.pgrp == ch.pgrp {
			p.signal(sig)
		}
	}
	return err
}

// signalAll sends sig to every process the command started: its group, and
// (on Linux) each descendant of renewlock outside the group. It returns
// how many descendants were still alive.
func (ch *child) signalAll(sig syscall.Signal) int {
	if ch.pgid > 0 {
		_ = syscall.Kill(-ch.pgid, sig)
	}
	procs := descendants()
	for _, p := range procs {
		if ch.pgid == 0 || p.pgrp != ch.pgid {
			p.signal(sig)
		}
	}
	return len(procs)
}

// terminate asks every process the command started to exit: SIGTERM, then
// SIGCONT so that a stopped one acts on it.
func (ch *child) terminate() {
	ch.signalAll(syscall.SIGTERM)
	ch.signalAll(syscall.SIGCONT)
}

// killAllTime bounds killAll's repeated rounds.
const killAllTime = 50 * time.Millisecond

// killAll kills every process the command started. A process may fork
// between the walk of /proc and the kill: the rounds repeat until none is
// left (or killAllTime passed).
func (ch *child) killAll() {
	deadline := time.Now().Add(killAllTime)
	for ch.signalAll(syscall.SIGKILL) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// onStopped relays a stop of the command by sig (Ctrl-Z, or SIGTTIN when
// it reads the terminal from the background) to the shell: renewlock takes
// the terminal back and stops itself, so that the shell sees its job
// stopped. While renewlock is stopped it does not renew the lease.
//
// A renewlock whose group is orphaned (no shell above it: it is the
// session leader, or its shell is gone) cannot be stopped that way, and
// nobody would continue it: as the kernel does for an orphaned job, it
// continues the command after a stop from the terminal (it leaves a
// SIGSTOP alone).
func (ch *child) onStopped(sig syscall.Signal) {
	if ch.tty < 0 || ch.waitingCont || !isStopped(ch.pid) {
		return
	}
	if orphanedGroup(ch.pgrp) {
		if sig != syscall.SIGSTOP {
			_ = syscall.Kill(-ch.pgid, syscall.SIGCONT)
		}
		return
	}
	if fg, err := tcgetpgrp(ch.tty); err == nil && fg == ch.pgid {
		_ = tcsetpgrp(ch.tty, ch.pgrp)
	}
	ch.waitingCont = true
	_ = syscall.Kill(os.Getpid(), syscall.SIGTSTP)
}

// onContinued is called when renewlock gets SIGCONT. It returns whether
// the command is to be continued (by resume, after resumeSettle).
func (ch *child) onContinued() bool {
	if !ch.waitingCont {
		return false
	}
	ch.waitingCont = false
	return true
}

// resume continues the command after renewlock was continued (fg or bg in
// the shell), giving it the terminal if renewlock has it.
func (ch *child) resume(lost bool) {
	if !lost {
		if fg, err := tcgetpgrp(ch.tty); err == nil && fg == ch.pgrp {
			_ = tcsetpgrp(ch.tty, ch.pgid)
		}
	}
	_ = syscall.Kill(-ch.pgid, syscall.SIGCONT)
}

// orphanedGroup reports whether the process group pgrp, of which renewlock
// is the only member, is orphaned: its parent is not in another group of
// the same session, so no shell can continue it.
func orphanedGroup(pgrp int) bool {
	ppid := os.Getppid()
	ppgrp, err1 := syscall.Getpgid(ppid)
	psid, err2 := unix.Getsid(ppid)
	sid, err3 := unix.Getsid(0)
	return err1 != nil || err2 != nil || err3 != nil || ppgrp == pgrp || psid != sid
}

func sysSignalName(s syscall.Signal) string { return unix.SignalName(s) }

// configureChild puts a demo worker in its own process group when ownGroup
// is set, and asks the kernel to kill it if renewlock dies (where
// supported).
func configureChild(cmd *exec.Cmd, ownGroup bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: ownGroup}
	setParentDeathSignal(cmd.SysProcAttr)
}

// canPause says whether pauseProcess works here.
const canPause = true

// pauseProcess stops p (SIGSTOP) as a long GC pause or a frozen VM would.
func pauseProcess(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// resumeProcess continues a paused p (SIGCONT).
func resumeProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
