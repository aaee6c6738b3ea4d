package renewlock_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// startReplicated starts a primary with n replicas and waits until they
// are in sync.
func startReplicated(t *testing.T, n int) (*redistest.Server, []*redistest.Server) {
	t.Helper()
	primary := redistest.Start(t)
	var replicas []*redistest.Server
	for range n {
		replicas = append(replicas, redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())))
	}
	admin := primary.Client()
	waitFor(t, 10*time.Second, "replicas in sync", func() bool {
		return admin.Do(context.Background(), "WAIT", n, 100).Val() == int64(n)
	})
	return primary, replicas
}

func TestReplicaAckBadInput(t *testing.T) {
	_, rdb, _ := setup(t)
	for _, tc := range []struct {
		opt  renewlock.Option
		want string
	}{
		{renewlock.WithReplicaAck(-1, time.Millisecond), "replica ack -1"},
		{renewlock.WithReplicaAck(renewlock.MaxReplicaAck+1, time.Millisecond), "replica ack 101"},
		{renewlock.WithReplicaAck(1, 0), "replica ack timeout 0s"},
		{renewlock.WithReplicaAck(1, time.Hour), "replica ack timeout 1h0m0s"},
	} {
		if _, err := renewlock.New(rdb, tc.opt); !errors.Is(err, renewlock.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v", tc.want, err)
		}
	}
}

// With enough replicas in sync, locks acknowledged by them work as usual:
// taken, renewed across several TTLs, handed to a waiter of another client
// (which confirms the grant with an acknowledged renewal first).
func TestReplicaAckWorks(t *testing.T) {
	primary, _ := startReplicated(t, 2)
	const ttl = 500 * time.Millisecond
	ack := renewlock.WithReplicaAck(2, 50*time.Millisecond)
	c1 := newClient(t, primary.Client(), renewlock.WithTTL(ttl), ack)
	c2 := newClient(t, primary.Client(), renewlock.WithTTL(ttl), ack)
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	l, err := c1.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *renewlock.Lock, 1)
	go func() {
		l2, err := c2.Acquire(ctx, key)
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	time.Sleep(3 * ttl) // renewed (with acknowledgements) several times
	if err := l.Err(); err != nil {
		t.Fatalf("lock lost while replicas acknowledged: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case l2 := <-got:
		if l2 == nil {
			t.FailNow()
		}
		if closedWithin(l2.Done(), 2*ttl) {
			t.Fatalf("handed-over lock lost: %v", l2.Err())
		}
		_ = l2.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never got the lock")
	}
}

// When fewer replicas than asked acknowledge, an acquisition is undone and
// reported (ErrNotReplicated), nothing is left in Redis, and a held lock's
// renewals stop counting: it is lost at its validity deadline, before
// Redis would expire it.
func TestReplicaAckMissing(t *testing.T) {
	primary, replicas := startReplicated(t, 2)
	const ttl = 600 * time.Millisecond
	c := newClient(t, primary.Client(), renewlock.WithTTL(ttl), renewlock.WithReplicaAck(2, 20*time.Millisecond))
	admin := primary.Client()
	ctx := ctxT(t, 20*time.Second)
	key := uniqueKey(t)
	held, err := c.Acquire(ctx, key+"/held")
	if err != nil {
		t.Fatal(err)
	}
	replicas[1].Pause()
	defer replicas[1].Resume()
	paused := time.Now()

	if _, err := c.TryAcquire(ctx, key); !errors.Is(err, renewlock.ErrNotReplicated) {
		t.Fatalf("TryAcquire with a replica paused: %v, want ErrNotReplicated", err)
	}
	if n := admin.Exists(ctx, renewlock.DefaultKeyPrefix+key).Val(); n != 0 {
		t.Fatal("the unreplicated acquisition was left in Redis")
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.Acquire(short, key); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("Acquire with a replica paused: %v, want the deadline and the replicas named", err)
	}
	// One acknowledgement is enough for a lock that asks for one.
	one, err := c.TryAcquire(ctx, key, renewlock.WithReplicaAck(1, 20*time.Millisecond))
	if err != nil {
		t.Fatalf("TryAcquire asking for 1 replica: %v", err)
	}
	_ = one.Release(ctx)

	select {
	case <-held.Done():
	case <-time.After(3 * ttl):
		t.Fatal("a lock whose renewals are not acknowledged was never lost")
	}
	if !errors.Is(held.Err(), renewlock.ErrLeaseLost) {
		t.Fatalf("Err = %v", held.Err())
	}
	if pttl := admin.PTTL(ctx, renewlock.DefaultKeyPrefix+key+"/held").Val(); pttl <= 0 {
		t.Fatalf("loss signalled after the key expired in Redis (PTTL %v)", pttl)
	}
	t.Logf("lost %v after a replica stopped acknowledging (TTL %v)", time.Since(paused).Round(time.Millisecond), ttl)
}
