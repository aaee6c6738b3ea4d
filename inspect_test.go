package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

var ownerRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestInspect(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)

	before := time.Now()
	l, err := c.Acquire(ctx, key, renewlock.WithTTL(2*time.Second), renewlock.WithHolder("web-1:4242"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Inspect(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != key || info.Token != l.Token() || info.Holder != "web-1:4242" || !ownerRE.MatchString(info.Owner) {
		t.Fatalf("Inspect = %+v, want key %q token %d holder web-1:4242 and a 32-hex owner", info, key, l.Token())
	}
	if info.TTL <= 0 || info.TTL > 2*time.Second {
		t.Fatalf("TTL = %v, want in (0, 2s]", info.TTL)
	}
	// The server runs on this machine, so its clock is ours (to a few ms).
	if info.AcquiredAt.Before(before.Add(-time.Second)) || info.AcquiredAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("AcquiredAt = %v, want about %v", info.AcquiredAt, before)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Only the token tombstone is left: that is not held.
	if _, err := c.Inspect(ctx, key); !errors.Is(err, renewlock.ErrNotHeld) {
		t.Fatalf("Inspect after Release: %v, want ErrNotHeld", err)
	}
	if _, err := c.Inspect(ctx, key+"/never"); !errors.Is(err, renewlock.ErrNotHeld) {
		t.Fatalf("Inspect of a key never taken: %v, want ErrNotHeld", err)
	}
}

func TestInspectDefaultHolder(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	key := uniqueKey(t)
	l, err := c.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	info, err := c.Inspect(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if want := fmt.Sprintf("%s:%d", host, os.Getpid()); info.Holder != want {
		t.Fatalf("Holder = %q, want %q", info.Holder, want)
	}
}

func TestOperatorBadArguments(t *testing.T) {
	_, _, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.Inspect(ctx, ""); !errors.Is(err, renewlock.ErrInvalidArgument) {
		t.Errorf("Inspect(\"\"): %v, want ErrInvalidArgument", err)
	}
	if _, err := c.ForceRelease(ctx, ""); !errors.Is(err, renewlock.ErrInvalidArgument) {
		t.Errorf("ForceRelease(\"\"): %v, want ErrInvalidArgument", err)
	}
	//lint:ignore SA1012 a nil context is the bad input under test
	if _, err := c.List(nil, ""); !errors.Is(err, renewlock.ErrInvalidArgument) { //nolint:staticcheck
		t.Errorf("List(nil ctx): %v, want ErrInvalidArgument", err)
	}
	_ = c.Close()
	if _, err := c.Inspect(ctx, "k"); !errors.Is(err, renewlock.ErrClientClosed) {
		t.Errorf("Inspect after Close: %v, want ErrClientClosed", err)
	}
	if _, err := c.List(ctx, ""); !errors.Is(err, renewlock.ErrClientClosed) {
		t.Errorf("List after Close: %v, want ErrClientClosed", err)
	}
}

func TestInspectRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv.Client(func(o *redis.Options) { o.MaxRetries = -1 }))
	ctx := ctxT(t, 10*time.Second)
	srv.Kill()
	_, err := c.Inspect(ctx, "k")
	if err == nil || errors.Is(err, renewlock.ErrNotHeld) {
		t.Fatalf("Inspect with Redis down: %v, want a connection error (not ErrNotHeld)", err)
	}
}

func TestList(t *testing.T) {
	_, rdb, c := setup(t)
	ctx := ctxT(t, 10*time.Second)
	base := uniqueKey(t)
	var held []*renewlock.Lock
	for _, k := range []string{"jobs/b", "jobs/a", "other/c", "jobs/*x"} {
		l, err := c.Acquire(ctx, base+"/"+k)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	released, err := c.Acquire(ctx, base+"/jobs/released")
	if err != nil {
		t.Fatal(err)
	}
	if err := released.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Not locks: a string under the prefix, and a lock hash under another prefix.
	rdb.Set(ctx, renewlock.DefaultKeyPrefix+base+"/jobs/plain", "x", time.Minute)
	rdb.HSet(ctx, "elsewhere:"+base+"/jobs/z", "o", "0123456789abcdef0123456789abcdef", "t", "1")

	got, err := c.List(ctx, base+"/jobs/*")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, in := range got {
		keys = append(keys, in.Key)
		if in.Token == 0 || in.Holder == "" || in.TTL <= 0 || !ownerRE.MatchString(in.Owner) {
			t.Errorf("List entry %+v has empty fields", in)
		}
	}
	want := []string{base + "/jobs/*x", base + "/jobs/a", base + "/jobs/b"}
	if !slices.Equal(keys, want) {
		t.Fatalf("List keys = %q, want %q", keys, want)
	}
	for _, in := range got {
		if in.Key == base+"/jobs/a" && in.Token != held[1].Token() {
			t.Fatalf("List token of jobs/a = %d, want %d", in.Token, held[1].Token())
		}
	}

	all, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("List(\"\") returned %d locks, want 4: %+v", len(all), all)
	}
	none, err := c.List(ctx, base+"/nothing*")
	if err != nil || none == nil || len(none) != 0 {
		t.Fatalf("List of no match = %#v, %v; want an empty, non-nil slice", none, err)
	}
	for _, l := range held {
		_ = l.Release(ctx)
	}
}

// TestListPrefixIsLiteral checks that glob characters in the key prefix
// match only themselves.
func TestListPrefixIsLiteral(t *testing.T) {
	_, rdb, _ := setup(t)
	ctx := ctxT(t, 10*time.Second)
	c := newClient(t, rdb, renewlock.WithKeyPrefix("a*["))
	l, err := c.Acquire(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	rdb.HSet(ctx, "aXY[k2", "o", "0123456789abcdef0123456789abcdef", "t", "1")
	got, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != "k1" {
		t.Fatalf("List = %+v, want only k1", got)
	}
}

// TestListMany covers more keys than one pipelined batch reads.
func TestListMany(t *testing.T) {
	_, rdb, c := setup(t)
	ctx := ctxT(t, 20*time.Second)
	const n = 2500
	pipe := rdb.Pipeline()
	for i := range n {
		k := fmt.Sprintf("%smany/%05d", renewlock.DefaultKeyPrefix, i)
		pipe.HSet(ctx, k, "o", fmt.Sprintf("%032x", i), "t", i+1, "h", "h", "a", 1700000000000000,
			"x", time.Now().Add(time.Minute).UnixMilli())
		pipe.PExpire(ctx, k, time.Minute)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.List(ctx, "many/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("List returned %d locks, want %d", len(got), n)
	}
	for i, in := range got {
		if want := fmt.Sprintf("many/%05d", i); in.Key != want || in.Token != uint64(i+1) {
			t.Fatalf("List[%d] = %+v, want key %q token %d", i, in, want, i+1)
		}
	}
	if got[0].AcquiredAt != time.UnixMicro(1700000000000000) {
		t.Fatalf("AcquiredAt = %v", got[0].AcquiredAt)
	}
}

// TestListCluster runs List through a ClusterClient on a one-node cluster,
// which scans every master with ForEachMaster.
func TestListCluster(t *testing.T) {
	dir := t.TempDir()
	srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"))
	ctx := ctxT(t, 20*time.Second)
	if err := srv.Client().Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(srv.Client().ClusterInfo(ctx).Val(), "cluster_state:ok") {
		if ctx.Err() != nil {
			t.Fatal("cluster state never became ok")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}})
	t.Cleanup(func() { _ = cc.Close() })
	c := newClient(t, cc)
	var want []string
	for _, k := range []string{"x/1", "x/2", "y/3"} {
		l, err := c.Acquire(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(context.Background())
		want = append(want, k)
	}
	got, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, in := range got {
		keys = append(keys, in.Key)
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("List on a cluster = %q, want %q", keys, want)
	}
}

func TestForceRelease(t *testing.T) {
	_, rdb, holderC := setup(t)
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	const ttl = 3 * time.Second
	l, err := holderC.Acquire(ctx, key, renewlock.WithTTL(ttl), renewlock.WithHolder("batch-7:99"))
	if err != nil {
		t.Fatal(err)
	}

	// A waiter on another client, blocked until the holder goes.
	waiterC := newClient(t, rdb)
	got := make(chan *renewlock.Lock, 1)
	errc := make(chan error, 1)
	go func() {
		l2, err := waiterC.Acquire(ctx, key, renewlock.WithTTL(ttl))
		errc <- err
		got <- l2
	}()
	// Wait until the waiter is in the lock's queue.
	for rdb.HGet(ctx, renewlock.DefaultKeyPrefix+key, "qn").Val() != "1" {
		if ctx.Err() != nil {
			t.Fatal("waiter never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}

	operator := newClient(t, rdb)
	start := time.Now()
	info, err := operator.ForceRelease(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != key || info.Token != l.Token() || info.Holder != "batch-7:99" || !ownerRE.MatchString(info.Owner) || info.AcquiredAt.IsZero() {
		t.Fatalf("ForceRelease = %+v, want the holder's token %d", info, l.Token())
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	l2 := <-got
	// Woken by the notification, not by the fallback timer at the TTL.
	if waited := time.Since(start); waited > ttl/2 {
		t.Fatalf("waiter took %v after the force release; the notification did not wake it", waited)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token after force release %d, not above %d", l2.Token(), l.Token())
	}
	// The old holder learns at its next renewal (TTL/3) that it lost the lease.
	if !closedWithin(l.Done(), ttl) || !errors.Is(l.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("old holder: Err = %v, want ErrLeaseLost", l.Err())
	}
	// Releasing the old lock must not touch the new holder's lease.
	if err := l.Release(ctx); !errors.Is(err, renewlock.ErrLeaseLost) {
		t.Fatalf("old holder's Release: %v, want ErrLeaseLost", err)
	}
	if in, err := operator.Inspect(ctx, key); err != nil || in.Token != l2.Token() {
		t.Fatalf("after the old holder's Release: Inspect = %+v, %v; want the new holder", in, err)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.ForceRelease(ctx, key); !errors.Is(err, renewlock.ErrNotHeld) {
		t.Fatalf("ForceRelease of a free key: %v, want ErrNotHeld", err)
	}
}
