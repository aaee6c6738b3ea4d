//go:build linux

// These tests build the renewlock binary once and run it as a process
// against real redis-server processes, with real children, signals and
// faults. They read /proc to watch processes, hence Linux only.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/renewlock/renewlock/internal/redistest"
)

// bin is the renewlock binary under test.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "renewlock-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "renewlock")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building renewlock:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var keySeq atomic.Int64

func uniqueKey(t *testing.T) string {
	return fmt.Sprintf("%s/%d", t.Name(), keySeq.Add(1))
}

// tool is one renewlock process.
type tool struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	code           int
}

// env is the environment for the tool: no Redis settings but the server's.
func env(srv *redistest.Server, extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RENEWLOCK_") && !strings.HasPrefix(kv, "REDIS_URL=") {
			out = append(out, kv)
		}
	}
	if srv != nil {
		out = append(out, "RENEWLOCK_REDIS="+srv.URL())
	}
	// A -race binary sleeps 1 s at exit by default; a race still fails
	// the test through exit status 66.
	out = append(out, "GORACE=atexit_sleep_ms=0")
	return append(out, extra...)
}

// start launches renewlock with args; it is killed when the test ends.
func start(t *testing.T, environ []string, args ...string) *tool {
	t.Helper()
	tl := &tool{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	tl.cmd.Env = environ
	tl.cmd.Stdout, tl.cmd.Stderr = &tl.stdout, &tl.stderr
	// A process the command left behind may hold the output pipes open.
	tl.cmd.WaitDelay = 2 * time.Second
	if err := tl.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = tl.cmd.Wait()
		tl.code = tl.cmd.ProcessState.ExitCode()
		if ws, ok := tl.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			tl.code = 128 + int(ws.Signal())
		}
		close(tl.done)
	}()
	t.Cleanup(func() {
		_ = tl.cmd.Process.Kill()
		<-tl.done
	})
	return tl
}

// wait waits for the process to exit and returns its status.
func (tl *tool) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-tl.done:
		return tl.code
	case <-time.After(within):
		_ = tl.cmd.Process.Kill()
		<-tl.done
		t.Fatalf("renewlock %q did not exit within %v; stderr:\n%s", tl.cmd.Args[1:], within, tl.stderr.String())
		return -1
	}
}

// runTool runs renewlock to completion.
func runTool(t *testing.T, environ []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	tl := start(t, environ, args...)
	code = tl.wait(t, 30*time.Second)
	return code, tl.stdout.String(), tl.stderr.String()
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// readPID waits for a file holding a pid.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	if !waitFor(10*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}) {
		t.Fatalf("no pid in %s", path)
	}
	return pid
}

// waiters returns how many waiters the lock key has in its queue: a
// blocked renewlock run is queued.
func waiters(t *testing.T, srv *redistest.Server, key string) int64 {
	n, err := srv.Client().HGet(context.Background(), "renewlock:"+key, "qn").Int64()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return n
}

// 1. Ten processes on one key: their children never overlap, and tokens
// increase from one to the next.
func TestRunMutualExclusion(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	log := filepath.Join(t.TempDir(), "log")
	script := `echo "start $RENEWLOCK_TOKEN" >> "$LOG"; sleep 0.02; echo "end $RENEWLOCK_TOKEN" >> "$LOG"`
	var tools []*tool
	for range 10 {
		tools = append(tools, start(t, env(srv, "LOG="+log), "run", "--key", key, "--ttl", "1s", "--", "sh", "-c", script))
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
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 20 {
		t.Fatalf("log has %d lines, want 20:\n%s", len(lines), b)
	}
	var last uint64
	for i := 0; i < len(lines); i += 2 {
		s, e := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(s) != 2 || len(e) != 2 || s[0] != "start" || e[0] != "end" || s[1] != e[1] {
			t.Fatalf("overlap or garbage at lines %d–%d:\n%s", i+1, i+2, b)
		}
		tok, err := strconv.ParseUint(s[1], 10, 64)
		if err != nil || tok <= last {
			t.Fatalf("token %q at line %d does not increase from %d:\n%s", s[1], i+1, last, b)
		}
		last = tok
	}
}

// 2. SIGKILL of renewlock kills its child (parent-death signal); the next
// waiter gets the lock within the TTL plus a small slack.
func TestRunKilledKillsChildAndWaiterTakesOver(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	dir := t.TempDir()
	const ttl = time.Second
	holder := start(t, env(srv), "run", "--key", key, "--ttl", ttl.String(), "--", "sh", "-c", `echo $$ > "$0"; exec sleep 60`, filepath.Join(dir, "pid"))
	child := readPID(t, filepath.Join(dir, "pid"))

	got := filepath.Join(dir, "got")
	waiter := start(t, env(srv), "run", "--key", key, "--ttl", ttl.String(), "--", "sh", "-c", `echo $RENEWLOCK_TOKEN > "$0"`, got)
	if !waitFor(10*time.Second, func() bool { return waiters(t, srv, key) > 0 }) {
		t.Fatal("the second run never waited for the lock")
	}

	killed := time.Now()
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return !alive(child) }) {
		t.Fatalf("child %d still alive 5s after renewlock was SIGKILLed", child)
	}
	t.Logf("child gone %v after SIGKILL of renewlock", time.Since(killed))
	if code := waiter.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("waiter exited %d: %s", code, waiter.stderr.String())
	}
	tookOver, err := os.Stat(got)
	if err != nil {
		t.Fatal(err)
	}
	after := tookOver.ModTime().Sub(killed)
	t.Logf("waiter's command ran %v after the kill (TTL %v)", after, ttl)
	// The lease runs out at most one TTL after the kill, and the waiter's
	// fallback timer is set to the holder's remaining lease; the slack covers
	// process start-up under -race on a loaded machine.
	if bound := ttl + 700*time.Millisecond; after > bound {
		t.Fatalf("waiter took over %v after the holder died; want within %v", after, bound)
	}
}

// 3. Redis paused past the validity deadline: renewlock SIGTERMs its child,
// then SIGKILLs it, before Redis would expire the key, and exits 76.
func TestRunLeaseLostWhenRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	key := uniqueKey(t)
	dir := t.TempDir()
	const ttl = time.Second
	// The child ignores SIGTERM, so SIGKILL after --grace must end it.
	script := `trap 'date +%s%N >> "$0/term"' TERM; echo $$ > "$0/pid"; while :; do sleep 0.01; done`
	tl := start(t, env(srv), "run", "--key", key, "--ttl", ttl.String(), "--", "sh", "-c", script, dir)
	child := readPID(t, filepath.Join(dir, "pid"))

	// Pause right after a renewal, so that the expiry read is the last one
	// Redis will set.
	exp0 := rdb.PExpireTime(ctx, "renewlock:"+key).Val()
	var expiry time.Duration
	if !waitFor(5*time.Second, func() bool {
		expiry = rdb.PExpireTime(ctx, "renewlock:"+key).Val()
		return expiry != exp0
	}) {
		t.Fatal("the lease was never renewed")
	}
	srv.Pause()
	defer srv.Resume()
	expiresAt := time.UnixMilli(expiry.Milliseconds())

	if !waitFor(5*time.Second, func() bool { return !alive(child) }) {
		t.Fatalf("child still alive 5s after Redis was paused")
	}
	died := time.Now()
	code := tl.wait(t, 10*time.Second)
	b, err := os.ReadFile(filepath.Join(dir, "term"))
	if err != nil {
		t.Fatalf("the child never got SIGTERM: %v; stderr:\n%s", err, tl.stderr.String())
	}
	ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	termAt := time.Unix(0, ns)
	t.Logf("SIGTERM %v and death %v before Redis expires the key", expiresAt.Sub(termAt), expiresAt.Sub(died))
	if !termAt.Before(expiresAt) || !died.Before(expiresAt) {
		t.Fatalf("SIGTERM at %v, child dead at %v: not before the key expires at %v", termAt, died, expiresAt)
	}
	if code != 76 || !strings.Contains(tl.stderr.String(), "lease") {
		t.Fatalf("exit %d, want 76 (lease lost); stderr:\n%s", code, tl.stderr.String())
	}
}

// 4. Exit statuses, environment, -n, --wait, and every bad flag value.
func TestRunExitCodesAndEnv(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)

	code, out, _ := runTool(t, env(srv), "run", "-k", key, "--", "sh", "-c", `echo "$RENEWLOCK_KEY $RENEWLOCK_TOKEN"; exit 3`)
	f := strings.Fields(out)
	if code != 3 || len(f) != 2 || f[0] != key {
		t.Fatalf("exit %d, output %q; want 3 and %q TOKEN", code, out, key)
	}
	if tok, err := strconv.ParseUint(f[1], 10, 64); err != nil || tok == 0 {
		t.Fatalf("RENEWLOCK_TOKEN = %q, want a decimal token", f[1])
	}
	if code, _, _ := runTool(t, env(srv), "run", "-k", key, "--", "true"); code != 0 {
		t.Fatalf("true: exit %d", code)
	}
	if code, _, _ := runTool(t, env(srv), "run", "-k", key, "--", "sh", "-c", "kill -USR1 $$"); code != 128+int(syscall.SIGUSR1) {
		t.Fatalf("child killed by SIGUSR1: exit %d, want %d", code, 128+int(syscall.SIGUSR1))
	}
	// Without "--", everything from the command on is the command's.
	if code, out, _ := runTool(t, env(srv), "run", "-k", key, "echo", "-n", "--key", "x"); code != 0 || out != "--key x" {
		t.Fatalf("command flags: exit %d, output %q", code, out)
	}
	if code, _, errOut := runTool(t, env(srv), "run", "-k", key, "--", "/nonexistent/cmd"); code != 127 || !strings.Contains(errOut, "/nonexistent/cmd") {
		t.Fatalf("missing command: exit %d, stderr %q; want 127", code, errOut)
	}
}

func TestRunNoWaitAndWait(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	holder := start(t, env(srv), "run", "-k", key, "--", "sh", "-c", `echo $$ > "$0/pid"; while [ ! -e "$0/release" ]; do sleep 0.01; done`, dir)
	readPID(t, filepath.Join(dir, "pid"))

	begin := time.Now()
	code, _, errOut := runTool(t, env(srv), "run", "-k", key, "-n", "--", "true")
	if code != 75 || !strings.Contains(errOut, "renewlock: ") || !strings.Contains(errOut, "held by") {
		t.Fatalf("-n on a held key: exit %d, stderr %q; want 75 naming the holder", code, errOut)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("-n took %v", d)
	}
	begin = time.Now()
	code, _, errOut = runTool(t, env(srv), "run", "-k", key, "--wait", "300ms", "--", "true")
	if code != 75 || !strings.Contains(errOut, "within --wait 300ms") {
		t.Fatalf("--wait 300ms on a held key: exit %d, stderr %q; want 75", code, errOut)
	}
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Fatalf("--wait 300ms gave up after %v", d)
	}

	// A waiter with enough --wait gets the lock when the holder releases.
	waiter := start(t, env(srv), "run", "-k", key, "--wait", "20", "--", "true")
	if !waitFor(10*time.Second, func() bool { return waiters(t, srv, key) > 0 }) {
		t.Fatal("waiter never waited")
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := holder.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("holder exited %d", code)
	}
	if code := waiter.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("waiter exited %d: %s", code, waiter.stderr.String())
	}
}

func TestRunSignals(t *testing.T) {
	srv := redistest.Start(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			// The child reports the signal it got and exits 7.
			script := fmt.Sprintf(`trap 'echo got >> "$0/sig"; exit 7' %d; echo $$ > "$0/pid"; while :; do sleep 0.01; done`, int(sig))
			tl := start(t, env(srv), "run", "-k", uniqueKey(t), "--", "sh", "-c", script, dir)
			readPID(t, filepath.Join(dir, "pid"))
			if err := tl.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := tl.wait(t, 10*time.Second); code != 7 {
				t.Fatalf("after %v: exit %d, want the child's 7; stderr:\n%s", sig, code, tl.stderr.String())
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "sig")); string(b) != "got\n" {
				t.Fatalf("child saw %q, want one forwarded %v", b, sig)
			}
		})
	}

	// A signal while waiting for the lock ends the wait: 128+N, a reason.
	key := uniqueKey(t)
	dir := t.TempDir()
	start(t, env(srv), "run", "-k", key, "--", "sh", "-c", `echo $$ > "$0"; exec sleep 60`, filepath.Join(dir, "pid"))
	readPID(t, filepath.Join(dir, "pid"))
	waiter := start(t, env(srv), "run", "-k", key, "--", "true")
	if !waitFor(10*time.Second, func() bool { return waiters(t, srv, key) > 0 }) {
		t.Fatal("waiter never waited")
	}
	if err := waiter.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waiter.wait(t, 10*time.Second); code != 128+int(syscall.SIGTERM) || !strings.Contains(waiter.stderr.String(), "interrupted") {
		t.Fatalf("SIGTERM while waiting: exit %d, stderr %q", code, waiter.stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"negative ttl", []string{"run", "-k", "k", "--ttl", "-5s", "--", "true"}, `"-5s"`},
		{"bad ttl", []string{"run", "-k", "k", "--ttl", "soon", "--", "true"}, `"soon"`},
		{"ttl below minimum", []string{"run", "-k", "k", "--ttl", "50ms", "--", "true"}, "--ttl 50ms"},
		{"ttl too short for grace", []string{"run", "-k", "k", "--ttl", "1s", "--grace", "800ms", "--", "true"}, "--grace 800ms"},
		{"negative wait", []string{"run", "-k", "k", "--wait", "-1", "--", "true"}, `"-1"`},
		{"missing key", []string{"run", "--", "true"}, "--key is required"},
		{"no command", []string{"run", "-k", "k"}, "no command"},
		{"no-wait and wait", []string{"run", "-k", "k", "-n", "--wait", "1s", "--", "true"}, "--no-wait"},
		{"bad url", []string{"run", "--redis", "redis://bob:hunter2@host:notaport", "-k", "k", "--", "true"}, "redis://bob:xxxxx@host:notaport"},
		{"bad scheme", []string{"run", "--redis", "http://h", "-k", "k", "--", "true"}, "http://h"},
		{"bad db", []string{"status", "--redis", "redis://h/notadb", "k"}, "notadb"},
		{"empty url", []string{"list", "--redis", ""}, "--redis"},
		{"unknown flag", []string{"run", "--frobnicate", "-k", "k", "--", "true"}, "--frobnicate"},
		{"unknown command", []string{"frobnicate"}, "frobnicate"},
		{"status without key", []string{"status"}, "exactly one KEY"},
		{"release without force", []string{"release", "k"}, "--force"},
		{"list with two patterns", []string{"list", "a", "b"}, "at most one PATTERN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runTool(t, env(srv), tc.args...)
			if code != 64 || !strings.HasPrefix(errOut, "renewlock: ") || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 64 and a message with %q", code, errOut, tc.want)
			}
			if strings.Contains(errOut, "hunter2") {
				t.Fatalf("stderr shows the password: %q", errOut)
			}
		})
	}
}

func TestRedisUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill() // nothing listens on its port now
	url := strings.Replace(srv.URL(), "redis://", "redis://u:hunter2@", 1)
	for _, args := range [][]string{
		{"run", "-k", "k", "--", "true"},
		{"status", "k"},
		{"list"},
		{"release", "--force", "k"},
	} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel() // each spends ~2 s in go-redis's dial retries
			code, _, errOut := runTool(t, env(nil, "RENEWLOCK_REDIS="+url), args...)
			if code != 69 || !strings.Contains(errOut, "unavailable") || strings.Contains(errOut, "hunter2") {
				t.Fatalf("%v with Redis down: exit %d, stderr %q; want 69, no password", args, code, errOut)
			}
		})
	}
}

// The URL precedence: --redis, then $RENEWLOCK_REDIS, then $REDIS_URL.
func TestRedisURLPrecedence(t *testing.T) {
	srv := redistest.Start(t)
	down := "redis://127.0.0.1:1"
	key := uniqueKey(t)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag beats env", []string{"RENEWLOCK_REDIS=" + down, "REDIS_URL=" + down}, []string{"--redis", srv.URL()}},
		{"RENEWLOCK_REDIS beats REDIS_URL", []string{"RENEWLOCK_REDIS=" + srv.URL(), "REDIS_URL=" + down}, nil},
		{"REDIS_URL", []string{"REDIS_URL=" + srv.URL()}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"status"}, tc.args...)
			code, _, errOut := runTool(t, env(nil, tc.env...), append(args, key)...)
			if code != 1 { // reached the server: not held
				t.Fatalf("exit %d, stderr %q; want 1 (not held) from the right server", code, errOut)
			}
		})
	}
}
