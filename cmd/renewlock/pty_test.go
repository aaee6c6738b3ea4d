//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, s
}

// ttyTool is a process started as the session leader of a new
// pseudo-terminal, as a login shell or a terminal emulator starts one: the
// terminal is its controlling terminal and its process group is the
// terminal's foreground group. The terminal's output (stdout and stderr
// together) is collected.
type ttyTool struct {
	*tool
	master *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	reader chan struct{}
}

// startTTY launches argv on a new pseudo-terminal; it is killed when the
// test ends.
func startTTY(t *testing.T, environ []string, argv ...string) *ttyTool {
	t.Helper()
	master, slave := openPTY(t)
	tt := &ttyTool{tool: &tool{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}, master: master, reader: make(chan struct{})}
	tt.cmd.Env = environ
	tt.cmd.Stdin, tt.cmd.Stdout, tt.cmd.Stderr = slave, slave, slave
	tt.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err := tt.cmd.Start()
	slave.Close()
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	go func() {
		defer close(tt.reader)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			tt.mu.Lock()
			tt.out.Write(buf[:n])
			tt.mu.Unlock()
			if err != nil {
				return // EIO once every process closed the terminal
			}
		}
	}()
	go func() {
		_ = tt.cmd.Wait()
		tt.code = tt.cmd.ProcessState.ExitCode()
		if ws, ok := tt.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			tt.code = 128 + int(ws.Signal())
		}
		close(tt.done)
	}()
	t.Cleanup(func() {
		// Everything left in the terminal's session: a background job
		// survives its shell's death, and would keep the terminal open.
		sid := tt.cmd.Process.Pid
		_ = tt.cmd.Process.Kill()
		<-tt.done
		inSession := func() (pids []int) {
			for _, p := range allPIDs() {
				if st, ok := readStat(p); ok && st.session == sid && st.state != 'Z' {
					pids = append(pids, p)
				}
			}
			return pids
		}
		if !waitFor(3*time.Second, func() bool { return len(inSession()) == 0 }) {
			for _, p := range inSession() {
				st, _ := readStat(p)
				t.Logf("killing %d %s (state %c), left in the terminal's session", p, comm(p), st.state)
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		master.Close()
		select {
		case <-tt.reader:
		case <-time.After(10 * time.Second):
			t.Errorf("the terminal is still open 10s after its session was killed")
		}
	})
	return tt
}

// output is what the terminal showed so far.
func (tt *ttyTool) output() string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.out.String()
}

// wait waits for the process to exit and returns its status.
func (tt *ttyTool) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-tt.done:
		return tt.code
	case <-time.After(within):
		_ = tt.cmd.Process.Kill()
		<-tt.done
		t.Fatalf("%q did not exit within %v; terminal:\n%s", tt.cmd.Args, within, tt.output())
		return -1
	}
}

// procStat is what /proc/PID/stat says about a process.
type procStat struct {
	state                      byte
	ppid, pgrp, session, tpgid int
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	// state ppid pgrp session tty_nr tpgid ...
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 6 {
		return procStat{}, false
	}
	var st procStat
	st.state = f[0][0]
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgrp, _ = strconv.Atoi(f[2])
	st.session, _ = strconv.Atoi(f[3])
	st.tpgid, _ = strconv.Atoi(f[5])
	return st, true
}

// allPIDs lists the processes in /proc.
func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if p, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// descendants lists the live processes whose parent chain leads to pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range allPIDs() {
		if st, ok := readStat(p); ok && st.state != 'Z' {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// How renewlock is started in a test.
type mode int

const (
	pipeMode    mode = iota // stdin, stdout, stderr are pipes (cron, CI)
	ttyMode                 // on a terminal, by a shell with job control (an interactive user)
	ttyNoJobs               // on a terminal, by a script without job control: renewlock shares its group
	ttyPipeline             // on a terminal with job control, in a pipeline: `renewlock run … | cat`
)

func (m mode) String() string {
	return [...]string{"pipe", "tty", "tty-no-job-control", "tty-pipeline"}[m]
}

// running is a renewlock process started by startIn.
type running struct {
	pid    int
	wait   func(time.Duration) int // waits for the exit status
	output func() string           // stderr, or what the terminal showed
	tty    *ttyTool                // the terminal's session leader (the shell), if any
}

// startIn starts renewlock with args in mode m.
func startIn(t *testing.T, m mode, environ []string, args ...string) *running {
	t.Helper()
	if m == pipeMode {
		tl := start(t, environ, args...)
		return &running{pid: tl.cmd.Process.Pid, wait: func(d time.Duration) int { return tl.wait(t, d) }, output: tl.stderr.String}
	}
	// The shell is the session leader, as in a terminal window; with
	// set -m it runs renewlock as a job in a process group of its own and
	// makes that the terminal's foreground group, as interactive shells do.
	// It outlives renewlock, so that its exit (which hangs the terminal up)
	// does not stop what renewlock left behind.
	status := filepath.Join(t.TempDir(), "status")
	// A keyboard's SIGINT also reaches a shell without job control: like
	// an interactive one, it must survive that (a trap, unlike an ignored
	// signal, is not inherited).
	script := `trap : INT; "$@"; echo $? > "$STATUS"; sleep 600`
	shell := []string{"sh", "-c", script, "sh", bin}
	switch m {
	case ttyMode:
		shell = []string{"bash", "-c", "set -m; " + script, "bash", bin}
	case ttyPipeline:
		// The reader ignores Ctrl-C, as a pager does: a job member killed
		// by SIGINT would end the non-interactive bash.
		script = strings.Replace(script, `"$@"; echo $?`, `"$@" | (trap '' INT; cat); echo "${PIPESTATUS[0]}"`, 1)
		shell = []string{"bash", "-c", "set -m; " + script, "bash", bin}
	}
	tt := startTTY(t, append(environ, "STATUS="+status), append(shell, args...)...)
	r := &running{output: tt.output, tty: tt}
	if !waitFor(10*time.Second, func() bool {
		for _, p := range descendants(tt.cmd.Process.Pid) {
			if comm(p) == "renewlock" {
				r.pid = p
				return true
			}
		}
		return false
	}) {
		t.Fatalf("renewlock never started; terminal:\n%s", tt.output())
	}
	r.wait = func(d time.Duration) int {
		t.Helper()
		var code int
		if !waitFor(d, func() bool {
			b, err := os.ReadFile(status)
			if err != nil || !strings.HasSuffix(string(b), "\n") {
				return false
			}
			code, err = strconv.Atoi(strings.TrimSpace(string(b)))
			return err == nil
		}) {
			t.Fatalf("renewlock did not exit within %v; terminal:\n%s", d, tt.output())
		}
		return code
	}
	return r
}
