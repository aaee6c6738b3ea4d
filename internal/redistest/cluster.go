package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redisserver"
)

// CLIBinary is the redis-cli executable used to form clusters; override
// with $REDIS_CLI.
func CLIBinary() string {
	if b := os.Getenv("REDIS_CLI"); b != "" {
		return b
	}
	return "redis-cli"
}

// clusterReadyTimeout bounds forming a cluster: redis-cli's own waits plus
// the gossip until every node reports cluster_state:ok.
const clusterReadyTimeout = 30 * time.Second

// Cluster is a Redis Cluster on loopback, owned by a test: masters, and
// replicas if asked (StartClusterWith). Its nodes stop when the test ends.
type Cluster struct {
	t     testing.TB
	cfg   ClusterConfig
	nodes []*Server
}

// ClusterConfig says how StartClusterWith builds a cluster.
type ClusterConfig struct {
	// Masters is the number of masters, at least 3 (redis-cli requires it).
	Masters int
	// Replicas is the number of replicas of each master. Default 0.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a node may be
	// unreachable before the others count it failed and its replica takes
	// over. Default 2 s.
	NodeTimeout time.Duration
	// Args are extra config directives for every node.
	Args []string
	// Env, if set, returns extra environment variables for node i (the
	// first Masters nodes start as masters, the others as their replicas),
	// e.g. a clockshim.Clock's.
	Env func(i int) []string
}

// StartCluster starts masters redis-server processes in cluster mode (at
// least 3, as redis-cli requires), joins them with
// `redis-cli --cluster create`, which spreads the 16384 slots evenly, and
// returns once every node reports cluster_state:ok. It fails t with a clear
// message if redis-server or redis-cli is not installed.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterConfig{Masters: masters})
}

// StartClusterWith starts cfg.Masters × (1 + cfg.Replicas) cluster-mode
// servers and joins them with `redis-cli --cluster create
// --cluster-replicas N`, which makes the first Masters nodes masters and
// attaches the others as their replicas. It returns once every node
// reports cluster_state:ok and every replica is in sync with its master.
func StartClusterWith(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	if cfg.Masters < 3 {
		t.Fatalf("redistest: StartCluster(%d): a Redis Cluster needs at least 3 masters", cfg.Masters)
	}
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 2 * time.Second
	}
	cli, err := exec.LookPath(CLIBinary())
	if err != nil {
		t.Fatalf("redistest: %s not found in PATH: it forms the test cluster; install it (apt-get install redis-tools) or set $REDIS_CLI: %v", CLIBinary(), err)
	}
	c := &Cluster{t: t, cfg: cfg}
	for i := range cfg.Masters * (1 + cfg.Replicas) {
		var env []string
		if cfg.Env != nil {
			env = cfg.Env(i)
		}
		c.nodes = append(c.nodes, startClusterNode(t, cfg, env))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(cfg.Replicas), "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	redisserver.SetParentDeathSignal(cmd.SysProcAttr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: %s %s: %v\n%s", cli, strings.Join(args, " "), err, out)
	}
	// redis-cli reports a failed check in its output, yet exits 0.
	if !bytes.Contains(out, []byte("[OK] All 16384 slots covered")) {
		t.Fatalf("redistest: %s %s did not cover all slots:\n%s", cli, strings.Join(args, " "), out)
	}
	if err := c.waitReady(ctx); err != nil {
		t.Fatalf("redistest: cluster on %s not ready: %v", strings.Join(c.addrs(), ","), err)
	}
	if cfg.Replicas > 0 {
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatalf("redistest: cluster on %s: replicas not in sync: %v", strings.Join(c.addrs(), ","), err)
		}
		// Every node knows every replica's master (votes in a failover
		// need it).
		if err := c.WaitAgreement(ctx); err != nil {
			t.Fatalf("redistest: cluster on %s: %v", strings.Join(c.addrs(), ","), err)
		}
	}
	return c
}

// startClusterNode starts one cluster-mode server. The cluster bus port is
// picked as a free port too: the default (port + 10000) is out of range for
// half of the ephemeral ports, and may be taken. (Start retries with a new
// client port if that one collides with the bus port.)
func startClusterNode(t testing.TB, cfg ClusterConfig, env []string) *Server {
	t.Helper()
	bus, err := freePort()
	if err != nil {
		t.Fatalf("redistest: finding a free cluster bus port: %v", err)
	}
	return StartEnv(t, env, append([]string{
		// Replicas sync at once (by default Redis waits 5 s for more
		// replicas to share a diskless sync).
		"--repl-diskless-sync-delay", "0",
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(cfg.NodeTimeout.Milliseconds(), 10),
		"--cluster-port", strconv.Itoa(bus),
	}, cfg.Args...)...)
}

func (c *Cluster) addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// waitReady polls every node until it reports cluster_state:ok and knows
// all other nodes, so that a client's first CLUSTER SLOTS gets the full map.
func (c *Cluster) waitReady(ctx context.Context) error {
	for _, n := range c.nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		var last string
		for {
			info, err := rdb.ClusterInfo(ctx).Result()
			if err == nil {
				if clusterInfoField(info, "cluster_state") == "ok" &&
					clusterInfoField(info, "cluster_known_nodes") == strconv.Itoa(len(c.nodes)) &&
					clusterInfoField(info, "cluster_slots_ok") == "16384" {
					break
				}
				last = info
			} else {
				last = err.Error()
			}
			select {
			case <-ctx.Done():
				_ = rdb.Close()
				return fmt.Errorf("node %s: %w; last CLUSTER INFO: %s", n.Addr(), ctx.Err(), last)
			case <-time.After(10 * time.Millisecond):
			}
		}
		_ = rdb.Close()
	}
	return nil
}

// clusterInfoField returns the value of name in a CLUSTER INFO reply.
func clusterInfoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// Nodes returns the cluster's servers, in the order given to redis-cli:
// without replicas, all masters; with replicas, the first Masters were
// made masters (roles change with failovers: ask Roles).
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string { return c.addrs() }

// Client returns a go-redis cluster client seeded with every node, closed
// when the test ends. opts may adjust the options (Addrs is set already).
func (c *Cluster) Client(opts ...func(*redis.ClusterOptions)) *redis.ClusterClient {
	o := &redis.ClusterOptions{Addrs: c.addrs()}
	for _, f := range opts {
		f(o)
	}
	rdb := redis.NewClusterClient(o)
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// SentinelMaster is the name under which a Sentinel started by
// StartSentinel monitors its master.
const SentinelMaster = "mymaster"

// Sentinel is one Redis Sentinel process owned by a test, monitoring one
// master as SentinelMaster (StartSentinel: alone, with a quorum of 1;
// StartSentinels: one of several). It stops when the test ends.
type Sentinel struct {
	t      testing.TB
	dir    string
	port   int
	master *Server
	// quorum, downAfter and failoverTimeout are its monitor settings.
	quorum          int
	downAfter       time.Duration
	failoverTimeout time.Duration

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartSentinel starts a Sentinel (redis-server CONF --sentinel) on a free
// loopback port that monitors master, and returns once it answers and
// reports master's address for SentinelMaster. Failure detection is short
// (1 s down-after), for tests that kill the master.
func StartSentinel(t testing.TB, master *Server) *Sentinel {
	t.Helper()
	if _, err := exec.LookPath(Binary()); err != nil {
		t.Fatalf("redistest: %s not found in PATH: install Redis (apt-get install redis-server) or set $REDIS_SERVER: %v", Binary(), err)
	}
	return startSentinel(t, master, 1, time.Second, 5*time.Second)
}

// startSentinel starts one Sentinel monitoring master with the given
// quorum, down-after and failover timeout.
func startSentinel(t testing.TB, master *Server, quorum int, downAfter, failoverTimeout time.Duration) *Sentinel {
	t.Helper()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s := &Sentinel{t: t, dir: t.TempDir(), master: master, quorum: quorum, downAfter: downAfter, failoverTimeout: failoverTimeout}
		if s.port, err = freePort(); err != nil {
			continue
		}
		if err = s.launch(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: starting redis sentinel for master %s: %v", master.Addr(), err)
	return nil
}

func (s *Sentinel) launch() error {
	conf := filepath.Join(s.dir, "sentinel.conf")
	log := filepath.Join(s.dir, "sentinel.log")
	// Sentinel rewrites its config file, so it lives in the temp dir.
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
daemonize no
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
`, s.port, s.dir, log, SentinelMaster, s.master.Port(), s.quorum,
		SentinelMaster, s.downAfter.Milliseconds(), SentinelMaster, s.failoverTimeout.Milliseconds())
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(Binary(), conf, "--sentinel")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	redisserver.SetParentDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer sc.Close()
	want := []string{"127.0.0.1", strconv.Itoa(s.master.Port())}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		got, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		cancel()
		if err == nil && len(got) == 2 && got[0] == want[0] && got[1] == want[1] {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("master address %v, want %v", got, want)
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(log)
			return fmt.Errorf("sentinel on port %d exited: %s", s.port, out)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("sentinel on port %d not ready after 10s: %v", s.port, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Addr returns the Sentinel's "127.0.0.1:PORT".
func (s *Sentinel) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// FailoverClient returns a go-redis client that finds the master through
// this Sentinel (MasterName SentinelMaster), closed when the test ends.
// opts may adjust the options (MasterName and SentinelAddrs are set).
func (s *Sentinel) FailoverClient(opts ...func(*redis.FailoverOptions)) *redis.Client {
	o := &redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: []string{s.Addr()}}
	for _, f := range opts {
		f(o)
	}
	rdb := redis.NewFailoverClient(o)
	s.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Stop kills the Sentinel. It is called automatically when the test ends.
func (s *Sentinel) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}
