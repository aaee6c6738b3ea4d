//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/redistest"
)

// leaderLine is one line of `renewlock leader --watch --json`.
type leaderLine struct {
	Name   string    `json:"name"`
	Value  string    `json:"value"`
	Term   uint64    `json:"term"`
	Holder string    `json:"holder"`
	Leader bool      `json:"leader"`
	Time   time.Time `json:"time"`
}

// startToFile launches renewlock with args, its stdout going to a file
// that the test can read while it runs; it is killed when the test ends.
func startToFile(t *testing.T, environ []string, args ...string) (*tool, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tl := &tool{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	tl.cmd.Env = environ
	tl.cmd.Stdout, tl.cmd.Stderr = f, &tl.stderr
	if err := tl.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = tl.cmd.Wait()
		tl.code = tl.cmd.ProcessState.ExitCode()
		close(tl.done)
	}()
	t.Cleanup(func() {
		_ = tl.cmd.Process.Kill()
		<-tl.done
	})
	return tl, out
}

// watchLines parses the JSON lines written so far to file.
func watchLines(t *testing.T, file string) []leaderLine {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	text = text[:strings.LastIndexByte(text, '\n')+1] // not a line being written
	var out []leaderLine
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if line == "" {
			continue
		}
		var l leaderLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("watch line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// readFields waits for a file of one complete line and returns its fields.
func readFields(t *testing.T, path string) []string {
	t.Helper()
	var f []string
	if !waitFor(10*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		f = strings.Fields(string(b))
		return true
	}) {
		t.Fatalf("nothing in %s", path)
	}
	return f
}

// electScript is a candidate's command: it writes "PID TERM TOKEN VALUE
// KEY" to $0/<value>, then runs until killed.
const electScript = `echo "$$ $RENEWLOCK_TERM $RENEWLOCK_TOKEN $RENEWLOCK_LEADER_VALUE $RENEWLOCK_KEY" > "$0/$RENEWLOCK_LEADER_VALUE.tmp"
mv "$0/$RENEWLOCK_LEADER_VALUE.tmp" "$0/$RENEWLOCK_LEADER_VALUE"
exec sleep 300`

// 8. Two candidates: only the leader runs its command. SIGKILL of the
// leader's renewlock kills its command (parent-death signal), the other
// candidate leads about one TTL later with a larger term, and a third
// process watching with `leader --watch --json` prints both leaders.
func TestElectFailover(t *testing.T) {
	srv := redistest.Start(t)
	name := uniqueKey(t)
	dir := t.TempDir()
	const ttl = time.Second

	watcher, watchOut := startToFile(t, env(srv), "leader", name, "--watch", "--json")
	if !waitFor(10*time.Second, func() bool { return len(watchLines(t, watchOut)) > 0 }) {
		t.Fatalf("leader --watch printed nothing; stderr:\n%s", watcher.stderr.String())
	}
	if l := watchLines(t, watchOut)[0]; l.Leader || l.Name != name || l.Term != 0 || l.Value != "" {
		t.Fatalf("first watch line %+v; want no leader of %s", l, name)
	}

	a := start(t, env(srv), "elect", "--name", name, "--value", "a", "--ttl", ttl.String(), "--", "sh", "-c", electScript, dir)
	fa := readFields(t, filepath.Join(dir, "a"))
	pidA, _ := strconv.Atoi(fa[0])
	termA, err := strconv.ParseUint(fa[1], 10, 64)
	if err != nil || fa[2] != fa[1] || fa[3] != "a" || fa[4] != name {
		t.Fatalf("a's command saw %q; want PID TERM TERM a %s (RENEWLOCK_TOKEN = RENEWLOCK_TERM)", fa, name)
	}

	b := start(t, env(srv), "elect", "--name", name, "--value", "b", "--ttl", ttl.String(), "--", "sh", "-c", electScript, dir)
	if !waitFor(10*time.Second, func() bool { return waiters(t, srv, name) > 0 }) {
		t.Fatalf("b never waited; stderr:\n%s", b.stderr.String())
	}
	time.Sleep(2 * ttl) // a's lease is renewed meanwhile: b does not lead
	if _, err := os.Stat(filepath.Join(dir, "b")); err == nil {
		t.Fatal("b's command runs while a leads")
	}
	if code, out, _ := runTool(t, env(srv), "leader", name); code != 0 || !strings.Contains(out, "leader:     a") || !strings.Contains(out, fa[1]) {
		t.Fatalf("leader: exit %d:\n%s", code, out)
	}

	killed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return !alive(pidA) }) {
		t.Fatalf("a's command %d still alive 5s after a's renewlock was SIGKILLed", pidA)
	}
	aDied := time.Now()
	fb := readFields(t, filepath.Join(dir, "b"))
	st, err := os.Stat(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	after := st.ModTime().Sub(killed)
	t.Logf("a's command gone %v after the kill; b leads %v after it (TTL %v)", aDied.Sub(killed), after, ttl)
	if bound := ttl + 700*time.Millisecond; after > bound {
		t.Fatalf("b took over %v after a died; want within %v", after, bound)
	}
	termB, err := strconv.ParseUint(fb[1], 10, 64)
	if err != nil || termB <= termA {
		t.Fatalf("b's term %q is not larger than a's %d", fb[1], termA)
	}

	// The watcher saw a, then b, with their terms.
	var lines []leaderLine
	if !waitFor(5*time.Second, func() bool {
		lines = watchLines(t, watchOut)
		return len(lines) > 0 && lines[len(lines)-1].Value == "b"
	}) {
		t.Fatalf("leader --watch never printed b: %+v", lines)
	}
	var seen []string
	for _, l := range lines {
		if l.Leader {
			seen = append(seen, l.Value+" "+strconv.FormatUint(l.Term, 10))
		}
		if l.Time.IsZero() || l.Name != name || (l.Leader && l.Holder == "") {
			t.Fatalf("bad watch line %+v", l)
		}
	}
	if want := []string{"a " + fa[1], "b " + fb[1]}; strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("leader --watch printed leaders %q; want %q (all lines: %+v)", seen, want, lines)
	}
	if err := watcher.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := watcher.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("leader --watch after SIGTERM: exit %d, want 0; stderr:\n%s", code, watcher.stderr.String())
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil { // forwarded: sleep dies of it
		t.Fatal(err)
	}
	if code := b.wait(t, 10*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("b after SIGTERM: exit %d, want %d; stderr:\n%s", code, 128+int(syscall.SIGTERM), b.stderr.String())
	}
	// b resigned: nobody leads.
	if code, out, _ := runTool(t, env(srv), "leader", name); code != 1 || !strings.Contains(out, "no leader") {
		t.Fatalf("leader after b resigned: exit %d, %q; want 1, no leader", code, out)
	}
}

// 9. Candidates take turns: each runs its command alone, and resigning
// hands the leadership to the next at once, with a larger term.
func TestElectOneAtATime(t *testing.T) {
	srv := redistest.Start(t)
	name := uniqueKey(t)
	log := filepath.Join(t.TempDir(), "log")
	script := `echo "start $RENEWLOCK_TERM" >> "$LOG"; sleep 0.2; echo "end $RENEWLOCK_TERM" >> "$LOG"`
	var tools []*tool
	for range 4 {
		tools = append(tools, start(t, env(srv, "LOG="+log), "elect", "--name", name, "--ttl", "1s", "--", "sh", "-c", script))
	}
	for i, tl := range tools {
		if code := tl.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("candidate %d exited %d: %s", i, code, tl.stderr.String())
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 8 {
		t.Fatalf("log has %d lines, want 8:\n%s", len(lines), b)
	}
	var last uint64
	for i := 0; i < len(lines); i += 2 {
		s, e := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(s) != 2 || len(e) != 2 || s[0] != "start" || e[0] != "end" || s[1] != e[1] {
			t.Fatalf("two leaders at once at lines %d–%d:\n%s", i+1, i+2, b)
		}
		term, err := strconv.ParseUint(s[1], 10, 64)
		if err != nil || term <= last {
			t.Fatalf("term %q at line %d does not increase from %d:\n%s", s[1], i+1, last, b)
		}
		last = term
	}
}

// 10. A leadership lost (force-released) stops the command: SIGTERM, then
// SIGKILL after --grace for a command that ignores SIGTERM; exit 76.
func TestElectLeadershipLost(t *testing.T) {
	srv := redistest.Start(t)
	name := uniqueKey(t)
	dir := t.TempDir()
	script := `trap 'echo term >> "$0/term"' TERM; echo $$ > "$0/pid"; while :; do sleep 0.01; done`
	tl := start(t, env(srv), "elect", "--name", name, "--ttl", "1s", "--", "sh", "-c", script, dir)
	pid := readPID(t, filepath.Join(dir, "pid"))

	lost := time.Now()
	if code, out, errOut := runTool(t, env(srv), "release", "--force", name); code != 0 {
		t.Fatalf("release --force: exit %d, %s%s", code, out, errOut)
	}
	if code := tl.wait(t, 10*time.Second); code != 76 || !strings.Contains(tl.stderr.String(), "the leadership of "+name) {
		t.Fatalf("elect after a force release: exit %d, want 76; stderr:\n%s", code, tl.stderr.String())
	}
	t.Logf("elect exited %v after the force release", time.Since(lost))
	if alive(pid) {
		t.Fatalf("the command %d still runs", pid)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "term")); string(b) != "term\n" {
		t.Fatalf("the command saw %q, want one SIGTERM before the SIGKILL", b)
	}
}

// 11. elect's exit statuses and messages; leader's one-shot forms.
func TestElectExitCodesAndLeader(t *testing.T) {
	srv := redistest.Start(t)
	name := uniqueKey(t)
	dir := t.TempDir()

	// The command's status; the default value is HOSTNAME:PID of elect.
	code, out, _ := runTool(t, env(srv), "elect", "--name", name, "--", "sh", "-c", `echo "$RENEWLOCK_LEADER_VALUE"; exit 3`)
	host, _ := os.Hostname()
	if code != 3 || !strings.HasPrefix(out, host+":") {
		t.Fatalf("exit %d, output %q; want 3 and %s:PID", code, out, host)
	}
	if code, out, _ := runTool(t, env(srv), "leader", name); code != 1 || out != name+": no leader\n" {
		t.Fatalf("leader after resigning: exit %d, %q", code, out)
	}

	leader := start(t, env(srv), "elect", "--name", name, "--value", "api-1:8080", "--", "sh", "-c", `echo $$ > "$0"; exec sleep 300`, filepath.Join(dir, "pid"))
	readPID(t, filepath.Join(dir, "pid"))

	begin := time.Now()
	code, _, errOut := runTool(t, env(srv), "elect", "--name", name, "-n", "--", "true")
	if code != 75 || !strings.Contains(errOut, `the leader is "api-1:8080"`) {
		t.Fatalf("-n with a leader: exit %d, stderr %q; want 75 naming the leader", code, errOut)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("-n took %v", d)
	}
	code, _, errOut = runTool(t, env(srv), "elect", "--name", name, "--wait", "300ms", "--", "true")
	if code != 75 || !strings.Contains(errOut, "within --wait 300ms") {
		t.Fatalf("--wait 300ms with a leader: exit %d, stderr %q; want 75", code, errOut)
	}

	code, out, _ = runTool(t, env(srv), "leader", "--json", name)
	var lj struct {
		leaderLine
		PID       int    `json:"pid"`
		TTLMillis *int64 `json:"ttl_ms"`
	}
	if err := json.Unmarshal([]byte(out), &lj); err != nil || code != 0 || !lj.Leader || lj.Value != "api-1:8080" || lj.Term == 0 ||
		lj.PID != leader.cmd.Process.Pid || lj.TTLMillis == nil || *lj.TTLMillis <= 0 {
		t.Fatalf("leader --json: exit %d, %v: %s", code, err, out)
	}
	code, out, _ = runTool(t, env(srv), "leader", name)
	for _, want := range []string{"leader:     api-1:8080", "term:       " + strconv.FormatUint(lj.Term, 10), "pid " + strconv.Itoa(leader.cmd.Process.Pid)} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("leader: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	// status and list show the election's kind and value.
	code, out, _ = runTool(t, env(srv), "status", "--json", name)
	var st lockJSON2
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.Kind != "election" || st.Value != "api-1:8080" || st.Token != lj.Term {
		t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	if _, out, _ = runTool(t, env(srv), "list", name); !strings.Contains(out, "election") || !strings.Contains(out, "value=api-1:8080") {
		t.Fatalf("list lacks the election:\n%s", out)
	}

	// A name that is another kind of lock: elect and leader exit 78.
	mutex := uniqueKey(t)
	holdLock(t, srv, mutex, 10*time.Second)
	if code, _, errOut := runTool(t, env(srv), "elect", "--name", mutex, "--", "true"); code != 78 || !strings.Contains(errOut, "not an election") {
		t.Fatalf("elect on a mutex: exit %d, stderr %q; want 78", code, errOut)
	}
	if code, _, errOut := runTool(t, env(srv), "leader", mutex); code != 78 || !strings.Contains(errOut, "not an election") {
		t.Fatalf("leader of a mutex: exit %d, stderr %q; want 78", code, errOut)
	}

	// A viewer that may not subscribe could watch only by polling: it is
	// told at once; with the channel it watches.
	viewer := []string{"~renewlock:*", "+evalsha", "+eval", "+hmget", "+hget", "+pttl", "+time", "+ping"}
	setUser(t, srv, "viewer", viewer...)
	checkExit(t, env(nil, "RENEWLOCK_REDIS="+userURL(srv, "viewer", secret)), 77, []string{"--watch", "subscribe", "Least privilege"}, "leader", name, "--watch")
	setUser(t, srv, "watcher", append(viewer, "+subscribe", "&renewlock:leader:*")...)
	w, wout := startToFile(t, env(nil, "RENEWLOCK_REDIS="+userURL(srv, "watcher", secret)), "leader", name, "--watch")
	if !waitFor(10*time.Second, func() bool { b, _ := os.ReadFile(wout); return strings.Contains(string(b), "leader api-1:8080") }) {
		t.Fatalf("leader --watch as a user with the channel printed nothing; stderr:\n%s", w.stderr.String())
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"elect", "--", "true"}, "--name is required"},
		{[]string{"elect", "--name", "x"}, "no command"},
		{[]string{"elect", "--name", "x", "-n", "--wait", "1s", "--", "true"}, "--no-wait"},
		{[]string{"elect", "--name", "x", "--ttl", "50ms", "--", "true"}, "--ttl 50ms"},
		{[]string{"leader"}, "exactly one NAME"},
		{[]string{"run", "-k", "x", "--limit", "0", "--", "true"}, "--limit 0"},
		{[]string{"run", "-k", "x", "--limit", "1001", "--", "true"}, "--limit 1001"},
	} {
		code, _, errOut := runTool(t, env(srv), tc.args...)
		if code != 64 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "renewlock "+tc.args[0]+" --help") {
			t.Fatalf("%q: exit %d, stderr %q; want 64 with %q and a hint", tc.args, code, errOut, tc.want)
		}
	}
}

// lockJSON2 is lockJSON with the fields of the lock family.
type lockJSON2 struct {
	lockJSON
	Kind    string `json:"kind"`
	Value   string `json:"value"`
	Limit   int    `json:"limit"`
	Holders []struct {
		Holder    string `json:"holder"`
		PID       int    `json:"pid"`
		Owner     string `json:"owner"`
		Token     uint64 `json:"token"`
		TTLMillis int64  `json:"ttl_ms"`
	} `json:"holders"`
}
