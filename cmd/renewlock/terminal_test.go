//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/redistest"
)

// 8. On a terminal, Ctrl-C reaches the command once: from the terminal,
// not a second time forwarded by renewlock.
func TestRunTerminalCtrlC(t *testing.T) {
	srv := redistest.Start(t)
	for _, m := range []mode{ttyMode, ttyNoJobs, ttyPipeline} {
		t.Run(m.String(), func(t *testing.T) {
			dir := t.TempDir()
			script := `trap 'echo int >> "$0/sig"; exit 7' INT; echo $$ > "$0/pid"; while :; do sleep 0.01; done`
			r := startIn(t, m, env(srv), "run", "-k", uniqueKey(t), "--", "sh", "-c", script, dir)
			readPID(t, filepath.Join(dir, "pid"))
			if _, err := r.tty.master.Write([]byte{3}); err != nil { // Ctrl-C
				t.Fatal(err)
			}
			if code := r.wait(10 * time.Second); code != 7 {
				t.Fatalf("exit %d, want the command's 7; terminal:\n%s", code, r.output())
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "sig")); string(b) != "int\n" {
				t.Fatalf("the command saw %q, want one SIGINT", b)
			}
		})
	}
}

// 9. Ctrl-Z stops the command, and renewlock relays the stop to the shell
// by stopping itself after taking the terminal back; continued, it
// continues the command.
func TestRunTerminalCtrlZ(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	dir := t.TempDir()
	// The command's loop never forks: a Ctrl-Z that lands while a shell
	// is between vfork and exec stops only the unexec'd child, and leaves
	// the shell in state D, which no job control can see.
	script := `trap 'exit 7' TERM; echo $$ > "$0/pid"; ` + forklessPause
	mkfifo(t, filepath.Join(dir, "fifo"))
	r := startIn(t, ttyMode, env(srv), "run", "-k", key, "--", "bash", "-c", script, dir)
	sh := readPID(t, filepath.Join(dir, "pid"))
	state := func(pid int) byte { st, _ := readStat(pid); return st.state }
	// Ctrl-Z is for the command once it has the terminal.
	if !waitFor(10*time.Second, func() bool { st, _ := readStat(sh); return st.tpgid == st.pgrp && st.pgrp == sh }) {
		t.Fatalf("the command never got the terminal; terminal:\n%s", r.output())
	}
	if _, err := r.tty.master.Write([]byte{26}); err != nil { // Ctrl-Z
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return state(sh) == 'T' && state(r.pid) == 'T' }) {
		t.Fatalf("after Ctrl-Z: command in state %c, renewlock in %c; want both stopped; terminal:\n%s", state(sh), state(r.pid), r.output())
	}
	// The shell got its job back as stopped (128+SIGTSTP), and the
	// terminal (it took the terminal back from renewlock).
	if code := r.wait(10 * time.Second); code != 128+int(syscall.SIGTSTP) {
		t.Fatalf("the shell saw renewlock end with %d, want %d (stopped)", code, 128+int(syscall.SIGTSTP))
	}
	if st, _ := readStat(sh); st.tpgid == st.pgrp {
		t.Fatalf("the stopped command's group %d still has the terminal", st.pgrp)
	}

	// "bg": renewlock continues, and continues the command.
	if err := syscall.Kill(r.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { s := state(sh); return s != 'T' && s != 0 }) {
		t.Fatalf("after SIGCONT to renewlock: command in state %c; want running", state(sh))
	}
	if state(r.pid) == 'T' {
		t.Fatal("renewlock still stopped")
	}
	// Still supervised: SIGTERM is forwarded, and the lock released.
	if err := syscall.Kill(r.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return !alive(r.pid) && !alive(sh) }) {
		t.Fatalf("renewlock (%c) or the command (%c) still alive after SIGTERM", state(r.pid), state(sh))
	}
	if code, _, _ := runTool(t, env(srv), "status", key); code != 1 {
		t.Fatalf("status after the run: exit %d, want 1 (released)", code)
	}
}

// 10. Started in the background (`renewlock run … &`), a command that reads
// the terminal is stopped (SIGTTIN); renewlock relays the stop, so the
// shell shows the job stopped, and on `fg` gives the command the terminal.
func TestRunTerminalBackgroundThenFg(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	script := `echo $$ > "$0/pid"; read x; echo "got $x" > "$0/got"`
	shell := `set -m
"$@" &
until jobs -l | grep -q Stopped; do sleep 0.01; done
fg %1
echo $? > "$STATUS"
sleep 600`
	status := filepath.Join(t.TempDir(), "status")
	tt := startTTY(t, env(srv, "STATUS="+status), "bash", "-c", shell, "bash", bin, "run", "-k", uniqueKey(t), "--", "sh", "-c", script, dir)
	sh := readPID(t, filepath.Join(dir, "pid"))
	if !waitFor(10*time.Second, func() bool { st, _ := readStat(sh); return st.tpgid == sh && st.state != 'T' }) {
		st, _ := readStat(sh)
		t.Fatalf("the command (state %c, group %d) never got the terminal (foreground group %d); terminal:\n%s", st.state, st.pgrp, st.tpgid, tt.output())
	}
	if _, err := tt.master.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "got"))
		return string(b) == "got hello\n"
	}) {
		t.Fatalf("the command did not read the terminal; terminal:\n%s", tt.output())
	}
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(status)
		return string(b) == "0\n"
	}) {
		b, _ := os.ReadFile(status)
		t.Fatalf("renewlock exited %q, want 0; terminal:\n%s", b, tt.output())
	}
}

// 11. renewlock as the terminal's session leader (a terminal window that
// runs it without a shell): no shell can continue a stopped job, so Ctrl-Z
// must not leave the command stopped for good.
func TestRunTerminalNoShellCtrlZ(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	script := `trap 'exit 7' INT; echo $$ > "$0/pid"; exec 3<>"$0/fifo"; i=0; while :; do i=$((i+1)); echo $i > "$0/tick"; read -t 0.01 -u 3; done`
	mkfifo(t, filepath.Join(dir, "fifo"))
	tt := startTTY(t, env(srv), bin, "run", "-k", uniqueKey(t), "--", "bash", "-c", script, dir)
	pid := readPID(t, filepath.Join(dir, "pid"))
	// Ctrl-Z is for the command once it has the terminal; before that it
	// would reach renewlock's group (a loaded machine widens the window).
	if !waitFor(10*time.Second, func() bool { st, _ := readStat(pid); return st.tpgid == st.pgrp && st.pgrp == pid }) {
		st, _ := readStat(pid)
		t.Fatalf("the command (group %d) never got the terminal (foreground group %d); terminal:\n%s", st.pgrp, st.tpgid, tt.output())
	}
	tick := func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "tick"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	if _, err := tt.master.Write([]byte{26}); err != nil { // Ctrl-Z
		t.Fatal(err)
	}
	from := tick()
	if !waitFor(10*time.Second, func() bool { return tick() > from+50 }) {
		t.Fatalf("the command stopped at tick %d after Ctrl-Z; terminal:\n%s", tick(), tt.output())
	}
	if _, err := tt.master.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	if code := tt.wait(t, 10*time.Second); code != 7 {
		t.Fatalf("exit %d, want the command's 7; terminal:\n%s", code, tt.output())
	}
}

// forklessPause waits forever without starting a process: bash reads, with
// a timeout, a FIFO ($0/fifo, made by the test) that nobody writes.
const forklessPause = `exec 3<>"$0/fifo"; while :; do read -t 0.01 -u 3; done`

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}
