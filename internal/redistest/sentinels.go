package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelConfig says how StartSentinels builds a replicated group.
type SentinelConfig struct {
	// Replicas of the primary. Default 2.
	Replicas int
	// Sentinels watching it. Default 3.
	Sentinels int
	// Quorum: how many Sentinels must agree that the primary is down.
	// Default: a majority of Sentinels.
	Quorum int
	// DownAfter is down-after-milliseconds: how long the primary may not
	// answer before a Sentinel counts it down. Default 1 s.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout. Default 3 s.
	FailoverTimeout time.Duration
	// Args are extra config directives for every data node.
	Args []string
	// Env, if set, returns extra environment variables for data node i
	// (0: the first primary, then the replicas), e.g. a clockshim.Clock's.
	Env func(i int) []string
}

// SentinelGroup is a primary with replicas, watched by several Sentinels
// that agree on failovers by quorum, all on loopback and owned by a test.
// Every process stops when the test ends.
type SentinelGroup struct {
	t         testing.TB
	cfg       SentinelConfig
	servers   []*Server // data nodes; servers[0] was the first primary
	sentinels []*Sentinel
}

// StartSentinels starts a primary, cfg.Replicas replicas of it and
// cfg.Sentinels Sentinels monitoring it as SentinelMaster, and returns once
// the replicas are in sync, every Sentinel knows every replica and every
// other Sentinel, and SENTINEL CKQUORUM succeeds: a failover can be
// authorized.
func StartSentinels(t testing.TB, cfg SentinelConfig) *SentinelGroup {
	t.Helper()
	if cfg.Replicas == 0 {
		cfg.Replicas = 2
	}
	if cfg.Sentinels == 0 {
		cfg.Sentinels = 3
	}
	if cfg.Quorum == 0 {
		cfg.Quorum = cfg.Sentinels/2 + 1
	}
	if cfg.DownAfter == 0 {
		cfg.DownAfter = time.Second
	}
	if cfg.FailoverTimeout == 0 {
		cfg.FailoverTimeout = 3 * time.Second
	}
	g := &SentinelGroup{t: t, cfg: cfg}
	// Replicas sync at once (by default Redis waits 5 s for more replicas
	// to share a diskless sync).
	nodeArgs := append([]string{"--repl-diskless-sync-delay", "0"}, cfg.Args...)
	env := func(i int) []string {
		if cfg.Env == nil {
			return nil
		}
		return cfg.Env(i)
	}
	primary := StartEnv(t, env(0), nodeArgs...)
	g.servers = append(g.servers, primary)
	for i := range cfg.Replicas {
		args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())}, nodeArgs...)
		g.servers = append(g.servers, StartEnv(t, env(1+i), args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := primary.WaitReplicasOnline(ctx, cfg.Replicas); err != nil {
		t.Fatal(err)
	}
	for range cfg.Sentinels {
		g.sentinels = append(g.sentinels, startSentinel(t, primary, cfg.Quorum, cfg.DownAfter, cfg.FailoverTimeout))
	}
	if err := g.waitSentinelsReady(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

// waitSentinelsReady waits until every Sentinel knows all replicas and all
// other Sentinels, and reports that quorum and authorization are reachable.
// Sentinels find each other by hello messages every 2 s, so this takes a
// few seconds.
func (g *SentinelGroup) waitSentinelsReady(ctx context.Context) error {
	for _, s := range g.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		var last string
		for {
			replicas, err := sc.Replicas(ctx, SentinelMaster).Result()
			if err == nil {
				var sentinels []map[string]string
				sentinels, err = sc.Sentinels(ctx, SentinelMaster).Result()
				if err == nil {
					var ck string
					ck, err = sc.CkQuorum(ctx, SentinelMaster).Result()
					if err == nil && len(replicas) == g.cfg.Replicas && len(sentinels) == g.cfg.Sentinels-1 {
						break
					}
					last = fmt.Sprintf("%d replicas, %d other sentinels, ckquorum %q", len(replicas), len(sentinels), ck)
				}
			}
			if err != nil {
				last = err.Error()
			}
			select {
			case <-ctx.Done():
				_ = sc.Close()
				return fmt.Errorf("redistest: sentinel %s not ready: %s: %w", s.Addr(), last, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		_ = sc.Close()
	}
	return nil
}

// Servers returns the data nodes; the first was the primary at the start.
func (g *SentinelGroup) Servers() []*Server { return append([]*Server(nil), g.servers...) }

// Sentinels returns the Sentinels.
func (g *SentinelGroup) Sentinels() []*Sentinel { return append([]*Sentinel(nil), g.sentinels...) }

// SentinelAddrs returns the Sentinels' addresses.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.sentinels))
	for i, s := range g.sentinels {
		out[i] = s.Addr()
	}
	return out
}

// Lookup returns the data node at addr, or nil.
func (g *SentinelGroup) Lookup(addr string) *Server {
	for _, s := range g.servers {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// FailoverClient returns a go-redis client that finds the primary through
// all the Sentinels, closed when the test ends. opts may adjust the
// options (MasterName and SentinelAddrs are set).
func (g *SentinelGroup) FailoverClient(opts ...func(*redis.FailoverOptions)) *redis.Client {
	o := &redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: g.SentinelAddrs()}
	for _, f := range opts {
		f(o)
	}
	rdb := redis.NewFailoverClient(o)
	g.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// sentinelPrimaries returns, per answering Sentinel, the primary it names.
func (g *SentinelGroup) sentinelPrimaries(ctx context.Context) []string {
	var out []string
	for _, s := range g.sentinels {
		if !s.running() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, probeTimeout)
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: probeTimeout})
		addr, err := sc.GetMasterAddrByName(qctx, SentinelMaster).Result()
		_ = sc.Close()
		cancel()
		if err == nil && len(addr) == 2 {
			out = append(out, addr[0]+":"+addr[1])
		}
	}
	return out
}

// Primary returns the data node the Sentinels name as primary, if every
// answering Sentinel names the same one.
func (g *SentinelGroup) Primary(ctx context.Context) (*Server, error) {
	views := g.sentinelPrimaries(ctx)
	if len(views) == 0 {
		return nil, errors.New("redistest: no sentinel answered")
	}
	for _, v := range views[1:] {
		if v != views[0] {
			return nil, fmt.Errorf("redistest: sentinels disagree on the primary: %v", views)
		}
	}
	s := g.Lookup(views[0])
	if s == nil {
		return nil, fmt.Errorf("redistest: sentinels name %s, not a node of the group", views[0])
	}
	return s, nil
}

// Failover asks one Sentinel for a failover (SENTINEL FAILOVER): it
// promotes a replica without asking the other Sentinels, and then
// reconfigures the other replicas and, once it sees it, the old primary.
// It does not wait; see WaitNewPrimary.
func (g *SentinelGroup) Failover(ctx context.Context) error {
	for _, s := range g.sentinels {
		if !s.running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		err := sc.Failover(ctx, SentinelMaster).Err()
		_ = sc.Close()
		if err != nil {
			return fmt.Errorf("redistest: SENTINEL FAILOVER via %s: %w", s.Addr(), err)
		}
		return nil
	}
	return errors.New("redistest: no sentinel running")
}

// WaitNewPrimary waits until every answering Sentinel names a primary other
// than old and that node reports the master role, and returns it.
func (g *SentinelGroup) WaitNewPrimary(ctx context.Context, old *Server) (*Server, error) {
	var last string
	for {
		p, err := g.Primary(ctx)
		if err == nil && p != old {
			if role, rerr := p.Role(ctx); rerr == nil && role == "master" {
				return p, nil
			}
		}
		if err != nil {
			last = err.Error()
		} else {
			last = "primary " + p.Addr()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redistest: no new primary (last: %s): %w", last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// WaitHealed waits until the primary the Sentinels name has every other
// running data node as a replica online and in sync, and returns it. Call it
// after a failover once any paused node is resumed.
func (g *SentinelGroup) WaitHealed(ctx context.Context) (*Server, error) {
	for {
		p, err := g.Primary(ctx)
		if err == nil {
			want := 0
			for _, s := range g.servers {
				if s != p && s.Running() {
					want++
				}
			}
			wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			err = p.WaitReplicasOnline(wctx, want)
			cancel()
			if err == nil {
				return p, nil
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("redistest: sentinel group not healed: %v: %w", err, ctx.Err())
		}
		time.Sleep(pollInterval)
	}
}

// SetMinReplicas sets min-replicas-to-write and min-replicas-max-lag on
// every running data node (each applies it while it is the primary).
func (g *SentinelGroup) SetMinReplicas(ctx context.Context, toWrite int, maxLag time.Duration) error {
	for _, s := range g.servers {
		if !s.Running() {
			continue
		}
		if err := s.SetMinReplicas(ctx, toWrite, maxLag); err != nil {
			return err
		}
	}
	return nil
}

// running reports whether the Sentinel process runs.
func (s *Sentinel) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Log returns the Sentinel's log so far (for a failing test's message).
func (s *Sentinel) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "sentinel.log"))
	return strings.TrimSpace(string(b))
}
