//go:build linux

package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// runLosingLease runs `sh -c script file` under Run, with the lease lost
// (the key deleted, and Done closed) by the hook that hook points at.
func runLosingLease(t *testing.T, hook *func(*tenure), script string) (file, stderr string, err error) {
	srv := redistest.Start(t)
	key := strings.ReplaceAll(t.Name(), "/", "-")
	dir := t.TempDir()
	file = filepath.Join(dir, "ran")
	errFile, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	*hook = func(l *tenure) {
		if err := srv.Client().Del(context.Background(), "renewlock:"+key).Err(); err != nil {
			t.Error(err)
		}
		<-l.Done() // at the next renewal
	}
	t.Cleanup(func() { *hook = nil })
	err = Run(context.Background(), &RunConfig{
		Redis:   RedisTarget{URL: srv.URL(), Source: "test"},
		Prefix:  renewlock.DefaultKeyPrefix,
		Key:     key,
		TTL:     time.Second,
		Command: []string{"sh", "-c", script, file},
		Stderr:  errFile,
	})
	b, _ := os.ReadFile(errFile.Name())
	return file, string(b), err
}

// The command never starts once the lease is lost.
func TestRunNotStartedWithoutLease(t *testing.T) {
	file, stderr, err := runLosingLease(t, &testHookBeforeStart, `touch "$0"`)
	if Code(err) != ExitLeaseLost || !strings.Contains(err.Error(), "before the command could start") {
		t.Fatalf("Run = %v (exit %d); want exit %d, not started; stderr %q", err, Code(err), ExitLeaseLost, stderr)
	}
	if _, err := os.Stat(file); err == nil {
		t.Fatal("the command ran")
	}
}

// A lease lost while the command starts: it is killed at once (SIGKILL,
// even though it ignores SIGTERM), before it can do anything.
func TestRunKilledWhenLeaseLostAtStart(t *testing.T) {
	file, stderr, err := runLosingLease(t, &testHookAfterStart, `trap '' TERM; sleep 0.5; touch "$0"`)
	if Code(err) != ExitLeaseLost || !strings.Contains(err.Error(), "killed at once (the command was killed by SIGKILL)") {
		t.Fatalf("Run = %v (exit %d); want exit %d, killed at once; stderr %q", err, Code(err), ExitLeaseLost, stderr)
	}
	// Run returns once the command is gone: it cannot touch the file later.
	if _, err := os.Stat(file); err == nil {
		t.Fatal("the command ran on")
	}
}
