//go:build linux

package main

import (
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/redistest"
)

// 12. run --limit 2 with 4 processes: never more than 2 commands at once,
// as the start and end times the commands append to a file show.
func TestRunLimit(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	log := filepath.Join(t.TempDir(), "log")
	script := `echo "S $(date +%s%N) $RENEWLOCK_TOKEN $RENEWLOCK_LIMIT" >> "$LOG"; sleep 0.3; echo "E $(date +%s%N) $RENEWLOCK_TOKEN" >> "$LOG"`
	var tools []*tool
	for range 4 {
		tools = append(tools, start(t, env(srv, "LOG="+log), "run", "--key", key, "--limit", "2", "--ttl", "1s", "--", "sh", "-c", script))
	}
	for i, tl := range tools {
		if code := tl.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("run %d exited %d: %s", i, code, tl.stderr.String())
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		at    int64
		start bool
		token string
	}
	var events []event
	starts := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("bad line %q:\n%s", line, b)
		}
		at, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("bad time in %q: %v", line, err)
		}
		if f[0] == "S" {
			if len(f) != 4 || f[3] != "2" || starts[f[2]] {
				t.Fatalf("start %q: want a new token and RENEWLOCK_LIMIT 2:\n%s", line, b)
			}
			starts[f[2]] = true
		}
		events = append(events, event{at, f[0] == "S", f[2]})
	}
	if len(events) != 8 || len(starts) != 4 {
		t.Fatalf("want 4 starts and 4 ends with distinct tokens:\n%s", b)
	}
	// Sweep in time order (an end before a start at the same instant).
	slices.SortFunc(events, func(x, y event) int {
		if x.at != y.at {
			return cmp.Compare(x.at, y.at)
		}
		if x.start == y.start {
			return 0
		}
		if x.start {
			return 1
		}
		return -1
	})
	running, most := 0, 0
	for _, e := range events {
		if e.start {
			running++
		} else {
			running--
		}
		most = max(most, running)
	}
	t.Logf("at most %d commands ran at once", most)
	if most > 2 {
		t.Fatalf("%d commands ran at once with --limit 2:\n%s", most, b)
	}
}

// 13. A holder of a permit killed with SIGKILL: its command dies with it,
// and its permit goes to a waiter within about one TTL. Meanwhile status and
// list show the semaphore, another --limit exits 78 and -n exits 75.
func TestRunLimitCrashFreesPermit(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	dir := t.TempDir()
	const ttl = time.Second
	script := `echo $$ > "$0"; exec sleep 300`
	h1 := start(t, env(srv), "run", "-k", key, "--limit", "2", "--ttl", ttl.String(), "--", "sh", "-c", script, filepath.Join(dir, "pid1"))
	h2 := start(t, env(srv), "run", "-k", key, "--limit", "2", "--ttl", ttl.String(), "--", "sh", "-c", script, filepath.Join(dir, "pid2"))
	child1 := readPID(t, filepath.Join(dir, "pid1"))
	readPID(t, filepath.Join(dir, "pid2"))

	code, out, _ := runTool(t, env(srv), "status", "--json", key)
	var st lockJSON2
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.Kind != "semaphore" || st.Limit != 2 || len(st.Holders) != 2 {
		t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	pids := []int{st.Holders[0].PID, st.Holders[1].PID}
	slices.Sort(pids)
	want := []int{h1.cmd.Process.Pid, h2.cmd.Process.Pid}
	slices.Sort(want)
	if !slices.Equal(pids, want) || st.Holders[0].Token >= st.Holders[1].Token || st.Holders[0].TTLMillis <= 0 {
		t.Fatalf("status --json holders %+v; want pids %v, oldest first", st.Holders, want)
	}
	if _, out, _ = runTool(t, env(srv), "status", key); !strings.Contains(out, "limit:   2 (2 held)") || !strings.Contains(out, "kind:    semaphore") {
		t.Fatalf("status:\n%s", out)
	}
	if _, out, _ = runTool(t, env(srv), "list", key); strings.Count(out, "semaphore 2/2") != 2 {
		t.Fatalf("list: want a row per holder:\n%s", out)
	}

	if code, _, errOut := runTool(t, env(srv), "run", "-k", key, "--limit", "3", "--", "true"); code != 78 || !strings.Contains(errOut, "--limit 3 disagrees") || !strings.Contains(errOut, "--limit 2") {
		t.Fatalf("--limit 3 against holders of --limit 2: exit %d, stderr %q; want 78", code, errOut)
	}
	if code, _, errOut := runTool(t, env(srv), "run", "-k", key, "--limit", "2", "-n", "--", "true"); code != 75 || !strings.Contains(errOut, "no permit") {
		t.Fatalf("-n with every permit held: exit %d, stderr %q; want 75", code, errOut)
	}
	if code, _, errOut := runTool(t, env(srv), "run", "-k", key, "--", "true"); code != 78 || !strings.Contains(errOut, "semaphore") {
		t.Fatalf("run without --limit on a semaphore: exit %d, stderr %q; want 78", code, errOut)
	}

	got := filepath.Join(dir, "got")
	waiter := start(t, env(srv), "run", "-k", key, "--limit", "2", "--ttl", ttl.String(), "--", "sh", "-c", `echo $RENEWLOCK_TOKEN > "$0"`, got)
	if !waitFor(10*time.Second, func() bool { return waiters(t, srv, key) > 0 }) {
		t.Fatal("the third run never waited for a permit")
	}
	killed := time.Now()
	if err := h1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return !alive(child1) }) {
		t.Fatalf("command %d still alive 5s after its renewlock was SIGKILLed", child1)
	}
	if code := waiter.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("waiter exited %d: %s", code, waiter.stderr.String())
	}
	fi, err := os.Stat(got)
	if err != nil {
		t.Fatal(err)
	}
	after := fi.ModTime().Sub(killed)
	t.Logf("the waiter's command ran %v after the kill (TTL %v)", after, ttl)
	if bound := ttl + 700*time.Millisecond; after > bound {
		t.Fatalf("the permit was freed %v after its holder died; want within %v", after, bound)
	}
	b, _ := os.ReadFile(got)
	if tok, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil || tok <= st.Holders[1].Token {
		t.Fatalf("waiter's token %q is not larger than %d", b, st.Holders[1].Token)
	}
}
