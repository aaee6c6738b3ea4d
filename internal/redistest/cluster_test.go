package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("3-master cluster ready in %v", time.Since(start))

	nodes := c.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("Nodes() = %d servers, want 3", len(nodes))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := c.Client()
	const n = 100
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET k%d through the cluster client: %v", i, err)
		}
	}
	// Each node must own a share of the keys: the slots are spread.
	total := int64(0)
	for _, s := range nodes {
		node := s.Client()
		info, err := node.ClusterInfo(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := clusterInfoField(info, "cluster_state"); got != "ok" {
			t.Errorf("node %s: cluster_state = %q", s.Addr(), got)
		}
		size, err := node.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if size == 0 {
			t.Errorf("node %s holds none of %d keys: slots not spread", s.Addr(), n)
		}
		total += size
	}
	if total != n {
		t.Errorf("nodes hold %d keys in all, want %d", total, n)
	}
	// A plain client on one node is redirected for a key it does not own.
	for i := range n {
		err := nodes[0].Client().Get(ctx, fmt.Sprintf("k%d", i)).Err()
		if err != nil && strings.HasPrefix(err.Error(), "MOVED ") {
			return
		}
	}
	t.Error("no MOVED redirection from node 0 for any key: not a cluster?")
}

func TestStartClusterTooSmall(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		StartCluster(ft, 2)
	}()
	if !strings.Contains(ft.msg, "at least 3 masters") {
		t.Errorf("StartCluster(2) failed with %q, want a message about 3 masters", ft.msg)
	}
}

// fatalRecorder records the message of Fatalf and stops the caller.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f.msg)
}

func TestStartSentinel(t *testing.T) {
	master := Start(t)
	start := time.Now()
	s := StartSentinel(t, master)
	t.Logf("sentinel ready in %v", time.Since(start))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := s.FailoverClient(func(o *redis.FailoverOptions) { o.DialTimeout = time.Second })
	if err := rdb.Set(ctx, "through-sentinel", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the failover client: %v", err)
	}
	// The write landed on the monitored master itself.
	if v, err := master.Client().Get(ctx, "through-sentinel").Result(); err != nil || v != "v" {
		t.Fatalf("GET on the master = %q, %v; want \"v\"", v, err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer sc.Close()
	got, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil || len(got) != 2 || got[0]+":"+got[1] != master.Addr() {
		t.Fatalf("SENTINEL get-master-addr-by-name = %v, %v; want %s", got, err, master.Addr())
	}
}
