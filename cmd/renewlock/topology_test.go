//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock/internal/redistest"
)

// The command reaches a Sentinel-managed primary and a Redis Cluster by
// URL (docs/cli.md, "Choosing the Redis server"): run, status, list and
// release --force against real topologies.

// holdLockAt is holdLock with the environment given.
func holdLockAt(t *testing.T, environ []string, key string, ttl time.Duration) (*tool, uint64, int) {
	t.Helper()
	dir := t.TempDir()
	script := `echo "$RENEWLOCK_TOKEN" > "$0/token"; echo $$ > "$0/pid"; while :; do sleep 0.01; done`
	tl := start(t, environ, "run", "--key", key, "--ttl", ttl.String(), "--", "sh", "-c", script, dir)
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

// statusJSON runs status --json and decodes it.
func statusJSON(t *testing.T, environ []string, key string) (int, lockJSON) {
	t.Helper()
	code, out, errOut := runTool(t, environ, "status", "--json", key)
	var st lockJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json %s: exit %d, %v: %s; stderr %s", key, code, err, out, errOut)
	}
	return code, st
}

// forceRelease runs release --force and checks that it removed token; the
// holder then exits 76 and its command is gone.
func forceRelease(t *testing.T, environ []string, key string, token uint64, holder *tool, child int) {
	t.Helper()
	code, out, errOut := runTool(t, environ, "release", "--force", "--json", key)
	var rel lockJSON
	if err := json.Unmarshal([]byte(out), &rel); err != nil || code != 0 || !rel.Released || rel.Token != token {
		t.Fatalf("release --force --json %s: exit %d, %v: %s; stderr %s", key, code, err, out, errOut)
	}
	if code := holder.wait(t, 15*time.Second); code != 76 {
		t.Fatalf("holder of %s after release --force: exit %d, want 76; stderr:\n%s", key, code, holder.stderr.String())
	}
	if alive(child) {
		t.Fatalf("holder's command %d still alive", child)
	}
}

func TestTopologySentinelURL(t *testing.T) {
	g := redistest.StartSentinels(t, redistest.SentinelConfig{})
	url := "redis-sentinel://" + strings.Join(g.SentinelAddrs(), ",") + "/" + redistest.SentinelMaster
	environ := env(nil, "RENEWLOCK_REDIS="+url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := uniqueKey(t)

	// run, status, list, release --force.
	key := base + "/a"
	holder, token, child := holdLockAt(t, environ, key, 3*time.Second)
	if code, st := statusJSON(t, environ, key); code != 0 || !st.Held || st.Token != token || st.PID != holder.cmd.Process.Pid {
		t.Fatalf("status: exit %d, %+v; want held with token %d", code, st, token)
	}
	primary, err := g.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok := primary.Client().HGet(ctx, "renewlock:"+key, "t").Val(); tok != fmt.Sprint(token) {
		t.Fatalf("token on the primary %q, want %d", tok, token)
	}
	code, out, _ := runTool(t, environ, "list", "--json", base+"/*")
	var list []lockJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list) != 1 || list[0].Token != token {
		t.Fatalf("list --json: exit %d, %v: %s", code, err, out)
	}
	forceRelease(t, environ, key, token, holder, child)

	// Across a failover, status follows the Sentinels to the new primary,
	// which has the lock (replicated), and the holder keeps it.
	key = base + "/b"
	holder, token, _ = holdLockAt(t, environ, key, 10*time.Second)
	if n, err := primary.Client().Do(ctx, "WAIT", 2, 1000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT 2: %d, %v", n, err)
	}
	if err := g.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := g.WaitNewPrimary(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	if code, st := statusJSON(t, environ, key); code != 0 || !st.Held || st.Token != token {
		t.Fatalf("status after the failover: exit %d, %+v; want held with token %d", code, st, token)
	}
	if tok := next.Client().HGet(ctx, "renewlock:"+key, "t").Val(); tok != fmt.Sprint(token) {
		t.Fatalf("token on the new primary %q, want %d", tok, token)
	}
	if code, _, errOut := runTool(t, environ, "run", "-n", "--key", key, "--", "true"); code != 75 {
		t.Fatalf("run -n on the held lock after the failover: exit %d, want 75; stderr %s", code, errOut)
	}
	select {
	case <-holder.done:
		t.Fatalf("holder exited %d across the failover; stderr:\n%s", holder.code, holder.stderr.String())
	case <-time.After(4 * time.Second): // more than a renew interval (ttl/3)
	}
}

func TestTopologyClusterURL(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	addrs := c.Addrs()
	url := "redis-cluster://" + addrs[0] + "," + addrs[1] // seeds: the client learns the third
	environ := env(nil, "RENEWLOCK_REDIS="+url)
	base := uniqueKey(t)

	// Locks on every master: list scans them all.
	type held struct {
		tl    *tool
		token uint64
		child int
	}
	locks := map[string]held{}
	onNode := map[string]bool{}
	rdb := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; len(onNode) < 3; i++ {
		key := fmt.Sprintf("%s/%d", base, i)
		m, err := rdb.MasterForKey(ctx, "renewlock:"+key)
		if err != nil {
			t.Fatal(err)
		}
		if onNode[m.Options().Addr] {
			continue
		}
		onNode[m.Options().Addr] = true
		tl, token, child := holdLockAt(t, environ, key, 3*time.Second)
		locks[key] = held{tl, token, child}
	}
	code, out, errOut := runTool(t, environ, "list", "--json", base+"/*")
	var list []lockJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list) != 3 {
		t.Fatalf("list --json: exit %d, %v: %s; stderr %s", code, err, out, errOut)
	}
	for _, l := range list {
		if h, ok := locks[l.Key]; !ok || !l.Held || l.Token != h.token {
			t.Fatalf("list entry %+v; want one of the 3 held locks", l)
		}
	}
	for key, h := range locks {
		if code, st := statusJSON(t, environ, key); code != 0 || !st.Held || st.Token != h.token || st.PID != h.tl.cmd.Process.Pid {
			t.Fatalf("status %s: exit %d, %+v; want held with token %d", key, code, st, h.token)
		}
		if code, _, errOut := runTool(t, environ, "run", "-n", "--key", key, "--", "true"); code != 75 {
			t.Fatalf("run -n on held %s: exit %d, want 75; stderr %s", key, code, errOut)
		}
		forceRelease(t, environ, key, h.token, h.tl, h.child)
		code, out, errOut := runTool(t, environ, "run", "-n", "--key", key, "--", "sh", "-c", `echo "$RENEWLOCK_TOKEN"`)
		next, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
		if code != 0 || next <= h.token {
			t.Fatalf("run on released %s: exit %d, token %q after %d; stderr %s", key, code, out, h.token, errOut)
		}
	}
}
