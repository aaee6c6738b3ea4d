//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/redistest"
)

// treeScript starts, under the command's shell, a pipeline in the
// background (grandchildren in the command's process group), a process that
// leaves the group and the session (setsid), and an orphan whose parent
// exits at once (a daemon's double fork), then waits. The last two ignore
// SIGTERM: renewlock kills them when the command has exited. With
// "trap ” TERM" in front, every process ignores SIGTERM, and only the
// SIGKILL after --grace ends them.
const treeScript = `d=$0
sleep 300 | cat &
setsid sh -c 'trap "" TERM; echo $$ > "$0/setsid"; exec sleep 300' "$d" &
( sh -c 'trap "" TERM; echo $$ > "$0/orphan"; exec sleep 300' "$d" & )
echo $$ > "$d/pid"
wait`

// comm is the command name of pid, "" if it is gone.
func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// startTree runs script (treeScript, perhaps with a prefix) under renewlock
// in mode m and returns renewlock's pid, a function waiting for its exit
// status, and every process the command started.
func startTree(t *testing.T, srv *redistest.Server, key string, m mode, script string) (pid int, wait func(time.Duration) int, procs map[int]string, dir string) {
	t.Helper()
	dir = t.TempDir()
	args := []string{"run", "--key", key, "--ttl", "1s", "--", "sh", "-c", script, dir}
	r := startIn(t, m, env(srv), args...)
	pid, wait, output := r.pid, r.wait, r.output
	sh := readPID(t, filepath.Join(dir, "pid"))
	escaped := []int{readPID(t, filepath.Join(dir, "setsid")), readPID(t, filepath.Join(dir, "orphan"))}
	procs = map[int]string{}
	if !waitFor(10*time.Second, func() bool {
		clear(procs)
		for _, p := range append(descendants(pid), escaped...) {
			procs[p] = comm(p)
		}
		n := 0
		for _, c := range procs {
			if c == "sleep" || c == "cat" {
				n++
			}
		}
		return procs[sh] == "sh" && n == 4 // the pipeline's two, setsid's, the orphan's
	}) {
		t.Fatalf("the command's processes never all started: %v; output:\n%s", procs, output())
	}
	t.Cleanup(func() {
		for p, c := range procs {
			if comm(p) == c {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
	return pid, wait, procs, dir
}

// 7. A lost lease stops every process the command started — grandchildren
// in its group, processes that left the group, orphans — in every mode:
// stdin a pipe (cron, CI) or a terminal (an interactive user), whether they
// exit on SIGTERM or only on the SIGKILL after --grace.
func TestRunLeaseLostStopsWholeTree(t *testing.T) {
	for _, m := range []mode{pipeMode, ttyMode, ttyNoJobs, ttyPipeline} {
		for _, ignoreTerm := range []bool{false, true} {
			name, script := m.String(), treeScript
			if ignoreTerm {
				name, script = name+"/ignoring-SIGTERM", "trap '' TERM\n"+treeScript
			}
			t.Run(name, func(t *testing.T) { testLeaseLostStopsTree(t, m, script) })
		}
	}
}

func testLeaseLostStopsTree(t *testing.T, m mode, script string) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	pid, wait, procs, dir := startTree(t, srv, key, m, script)
	t.Logf("processes: %v", procs)
	sh := readPID(t, filepath.Join(dir, "pid"))
	st, _ := readStat(sh)
	switch m {
	case ttyMode: // a group of its own, the terminal's foreground group
		if st.pgrp != sh || st.tpgid != sh {
			t.Errorf("command %d: group %d, terminal's foreground group %d; want its own, in the foreground", sh, st.pgrp, st.tpgid)
		}
	case ttyNoJobs, ttyPipeline: // renewlock's group (the script's, the pipeline's)
		if rst, _ := readStat(pid); st.pgrp != rst.pgrp {
			t.Errorf("command in group %d, renewlock in %d; want the same", st.pgrp, rst.pgrp)
		}
	case pipeMode:
		if st.pgrp != sh {
			t.Errorf("command %d in group %d; want its own", sh, st.pgrp)
		}
	}

	lost := time.Now()
	if err := srv.Client().Del(context.Background(), "renewlock:"+key).Err(); err != nil {
		t.Fatal(err)
	}
	// The loss is seen at the next renewal (ttl/3); SIGTERM then,
	// SIGKILL after --grace (100ms) to whatever is left, which must
	// be gone before the kill slack (100ms) ends. The rest of the
	// bound absorbs -race and a loaded machine.
	bound := time.Second/3 + 100*time.Millisecond + 100*time.Millisecond + 300*time.Millisecond
	var left []string
	if !waitFor(bound, func() bool {
		left = left[:0]
		for p, c := range procs {
			if alive(p) && comm(p) == c {
				left = append(left, c+" "+strconv.Itoa(p))
			}
		}
		return len(left) == 0
	}) {
		t.Fatalf("still running %v after the key was deleted: %v", bound, left)
	}
	t.Logf("every process gone %v after the key was deleted", time.Since(lost))
	if code := wait(10 * time.Second); code != 76 {
		t.Fatalf("exit %d, want 76 (lease lost)", code)
	}
}
