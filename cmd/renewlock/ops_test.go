//go:build linux

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/redistest"
)

type lockJSON struct {
	Key        string    `json:"key"`
	Held       bool      `json:"held"`
	Holder     string    `json:"holder"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	Owner      string    `json:"owner"`
	Token      uint64    `json:"token"`
	TTLMillis  *int64    `json:"ttl_ms"`
	Waiters    *int      `json:"waiters"`
	AcquiredAt time.Time `json:"acquired_at"`
	Released   bool      `json:"released"`
}

// holdLock starts `renewlock run` with a child that runs until killed, and
// returns the tool, the child's token and pid.
func holdLock(t *testing.T, srv *redistest.Server, key string, ttl time.Duration) (*tool, uint64, int) {
	t.Helper()
	dir := t.TempDir()
	script := `echo "$RENEWLOCK_TOKEN" > "$0/token"; echo $$ > "$0/pid"; while :; do sleep 0.01; done`
	tl := start(t, env(srv), "run", "--key", key, "--ttl", ttl.String(), "--", "sh", "-c", script, dir)
	pid := readPID(t, filepath.Join(dir, "pid"))
	b, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return tl, tok, pid
}

// 5. status and list show what a running holder wrote; --json parses;
// release --force removes it, and the holder's command is stopped.
func TestStatusListRelease(t *testing.T) {
	srv := redistest.Start(t)
	base := uniqueKey(t)
	const ttl = time.Second
	key := base + "/b"
	holder, token, child := holdLock(t, srv, key, ttl)
	_, otherToken, _ := holdLock(t, srv, base+"/a", 10*time.Second)
	host, _ := os.Hostname()

	code, out, errOut := runTool(t, env(srv), "status", key)
	if code != 0 {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{key, strconv.FormatUint(token, 10), "pid " + strconv.Itoa(holder.cmd.Process.Pid), "host " + host, "ttl:", "acquired:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runTool(t, env(srv), "status", "--json", key)
	var st lockJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: exit %d, %v:\n%s", code, err, out)
	}
	if !st.Held || st.Key != key || st.Token != token || st.PID != holder.cmd.Process.Pid || st.Host != host ||
		!regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(st.Owner) || st.TTLMillis == nil || *st.TTLMillis <= 0 || *st.TTLMillis > ttl.Milliseconds() {
		t.Fatalf("status --json = %+v; want held by pid %d with token %d", st, holder.cmd.Process.Pid, token)
	}
	if age := time.Since(st.AcquiredAt); age < 0 || age > time.Minute {
		t.Fatalf("acquired_at %v is %v ago", st.AcquiredAt, age)
	}

	// A second run waits in the lock's queue; status shows it.
	waiter := start(t, env(srv), "run", "--key", key, "--", "true")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, _ = runTool(t, env(srv), "status", "--json", key)
		st = lockJSON{}
		if err := json.Unmarshal([]byte(out), &st); err == nil && st.Waiters != nil && *st.Waiters == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --json never showed the waiter: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, out, _ = runTool(t, env(srv), "status", key); !strings.Contains(out, "waiters:") {
		t.Fatalf("status output lacks the waiters:\n%s", out)
	}

	code, out, _ = runTool(t, env(srv), "list", "--json", base+"/*")
	var list []lockJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 {
		t.Fatalf("list --json: exit %d, %v:\n%s", code, err, out)
	}
	if len(list) != 2 || list[0].Key != base+"/a" || list[0].Token != otherToken || list[1].Key != key || list[1].Token != token {
		t.Fatalf("list --json = %+v; want %s/a then %s", list, base, key)
	}
	code, out, _ = runTool(t, env(srv), "list", base+"/*")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "KEY") {
		t.Fatalf("list: exit %d:\n%s", code, out)
	}
	code, out, _ = runTool(t, env(srv), "list", "--json", base+"/nothing*")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("list --json with no match: exit %d, %q; want []", code, out)
	}

	code, out, _ = runTool(t, env(srv), "release", "--force", "--json", key)
	var rel lockJSON
	if err := json.Unmarshal([]byte(out), &rel); err != nil || code != 0 || !rel.Released || rel.Token != token {
		t.Fatalf("release --force --json: exit %d, %v: %s", code, err, out)
	}
	// The holder finds out at its next renewal (ttl/3) and stops its command.
	if code := holder.wait(t, 10*time.Second); code != 76 {
		t.Fatalf("holder after force release: exit %d, want 76; stderr:\n%s", code, holder.stderr.String())
	}
	if alive(child) {
		t.Fatalf("holder's command %d still alive", child)
	}
	// The force release passed the lock to the waiter, which ran its command.
	if code := waiter.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("waiter after force release: exit %d, want 0; stderr:\n%s", code, waiter.stderr.String())
	}
	if code, out, _ := runTool(t, env(srv), "status", "--json", key); code != 1 || !strings.Contains(out, `"held": false`) {
		t.Fatalf("status after release: exit %d, %s; want 1 and held false", code, out)
	}
	if code, out, _ := runTool(t, env(srv), "release", "--force", key); code != 1 || !strings.Contains(out, "not held") {
		t.Fatalf("second release: exit %d, %q; want 1, not held", code, out)
	}
}

// 6. The demo runs to completion with no redis-server on PATH (embedded
// server) in under a minute, and against a given server it leaves no keys.
func TestDemo(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		begin := time.Now()
		code, out, errOut := runTool(t, env(nil, "PATH="+t.TempDir()), "demo")
		took := time.Since(begin)
		t.Logf("demo with miniredis took %v", took)
		if code != 0 {
			t.Fatalf("demo: exit %d; stderr:\n%s\nstdout:\n%s", code, errOut, out)
		}
		checkDemo(t, out, "embedded miniredis")
		if took > time.Minute {
			t.Fatalf("demo took %v", took)
		}
	})
	t.Run("given server", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		code, out, errOut := runTool(t, env(nil), "demo", "--redis", srv.URL())
		if code != 0 {
			t.Fatalf("demo: exit %d; stderr:\n%s\nstdout:\n%s", code, errOut, out)
		}
		checkDemo(t, out, srv.URL())
		if n := srv.Client().DBSize(context.Background()).Val(); n != 0 {
			t.Fatalf("the demo left %d keys behind", n)
		}
	})
}

func checkDemo(t *testing.T, out, backend string) {
	t.Helper()
	for _, want := range []string{backend, "1. ", "2. ", "3. ", "4. ", "killed with SIGKILL", "REJECTED", "Done in"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	// Tokens shown as "fencing token N" only go up.
	var last uint64
	for _, m := range regexp.MustCompile(`acquired the lock, fencing token (\d+)`).FindAllStringSubmatch(out, -1) {
		tok, _ := strconv.ParseUint(m[1], 10, 64)
		if tok <= last {
			t.Fatalf("token %d after %d in the demo:\n%s", tok, last, out)
		}
		last = tok
	}
}
