package renewlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is wrapped by the error of an acquisition that Redis
// made but that fewer replicas than WithReplicaAck asks for acknowledged in
// time: the acquisition was undone. Acquire keeps trying until its context
// ends; TryAcquire returns it.
var ErrNotReplicated = errors.New("renewlock: not acknowledged by enough replicas")

// MaxReplicaAck bounds the replicas WithReplicaAck may ask for.
const MaxReplicaAck = 100

// WithReplicaAck makes an acquisition, a hand-off and every renewal count
// only once n replicas have acknowledged the write: the script is followed
// by WAIT n timeout on the same connection, in the same round trip. An
// acquisition that misses its acknowledgements is undone (owner-checked)
// and reported (ErrNotReplicated); a lock handed over by a release is
// renewed, with acknowledgements, before the waiter gets it; a renewal that
// misses them counts as failed, and the validity deadline decides. Default:
// 0, no acknowledgement (Redis replicates asynchronously). timeout must be
// at least 1 ms and shorter than the renew interval.
//
// Acknowledged writes survive a failover to a replica that acknowledged
// them, so a lock is not lost to a failover that Redis Sentinel or Cluster
// carries out while its holder believes it holds it — as long as the
// replica promoted is one of those that acknowledged. See GUARANTEES.md for
// what was measured. It costs one WAIT per round trip, which lasts as long
// as the slowest of the n replicas takes to acknowledge.
func WithReplicaAck(n int, timeout time.Duration) Option {
	return func(c *config) { c.replicas, c.replicaTimeout = n, timeout }
}

// ackWanted is the WAIT a set of leases needs: the most replicas and the
// longest timeout any of them asks for.
type ackWanted struct {
	n       int
	timeout time.Duration
}

func (a *ackWanted) add(cfg *config) {
	a.n = max(a.n, cfg.replicas)
	a.timeout = max(a.timeout, cfg.replicaTimeout)
}

// nodeFor returns the client that talks to the node holding rkey: its
// master on a Cluster (WAIT must follow the write on the same connection,
// and a cluster pipeline would send a keyless WAIT anywhere), rdb itself
// otherwise.
func nodeFor(ctx context.Context, rdb redis.UniversalClient, rkey string) (redis.Cmdable, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.MasterForKey(ctx, rkey)
	}
	return rdb, nil
}

// pipeliner is what runAcked needs of a node client.
type pipeliner interface {
	Pipeline() redis.Pipeliner
}

// runAcked runs one script call followed by WAIT in one pipeline on the
// node of rkey: by SHA, and by source after NOSCRIPT. It returns the
// script's command and how many replicas acknowledged.
func runAcked(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, rkey string, args []any, ack ackWanted) (*redis.Cmd, int64) {
	node, err := nodeFor(ctx, rdb, rkey)
	if err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd, 0
	}
	p, ok := node.(pipeliner)
	if !ok {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(fmt.Errorf("renewlock: %T cannot pipeline", node))
		return cmd, 0
	}
	var cmd *redis.Cmd
	var wait *redis.Cmd
	for attempt := 0; attempt < 2; attempt++ {
		pipe := p.Pipeline()
		if attempt == 0 {
			cmd = script.EvalSha(ctx, pipe, []string{rkey}, args...)
		} else {
			cmd = script.Eval(ctx, pipe, []string{rkey}, args...)
		}
		wait = waitCmd(ctx, pipe, ack)
		if _, err := pipe.Exec(ctx); err != nil && cmd.Err() == nil && cmd.Val() == nil {
			cmd.SetErr(err)
		}
		if !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			break
		}
	}
	reloadOnTopologyError(ctx, rdb, cmd.Err())
	n, _ := wait.Int64()
	return cmd, n
}

// waitCmd queues WAIT n timeout on pipe. (WAIT is not part of go-redis's
// Cmdable interface.)
func waitCmd(ctx context.Context, pipe redis.Pipeliner, ack ackWanted) *redis.Cmd {
	return pipe.Do(ctx, "WAIT", ack.n, ack.timeout.Milliseconds())
}

// reloadOnTopologyError makes a Cluster client reload its slot map when a
// command learns that the cluster changed: a slot moved (MOVED, ASK: go-redis
// follows them only for the commands it routes itself), or a node did not
// answer at all (its master may be dead, and its replica promoted: go-redis
// otherwise keeps sending that node's slots to it until its periodic reload,
// up to a minute later). go-redis coalesces reloads, so this is cheap.
func reloadOnTopologyError(ctx context.Context, rdb redis.UniversalClient, err error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok || err == nil {
		return
	}
	if redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") || redis.HasErrorPrefix(err, "CLUSTERDOWN") ||
		(!isReplyError(err) && !errors.Is(err, context.Canceled)) {
		cc.ReloadState(context.WithoutCancel(ctx))
	}
}

// renewAcked renews leases as renewMany does, but with WAIT after the
// scripts of each node, in one pipeline per node (in parallel on a
// Cluster). Each result carries how many replicas acknowledged its node's
// writes.
func renewAcked(ctx context.Context, rdb redis.UniversalClient, loaded interface{ Store(bool) }, leases []*lease, ack ackWanted) []renewResult {
	out := make([]renewResult, len(leases))
	type target struct {
		node   redis.Cmdable
		groups [][]int
	}
	targets := map[redis.Cmdable]*target{}
	var order []*target
	for _, g := range group(rdb, leases) {
		node, err := nodeFor(ctx, rdb, leases[g[0]].rkey)
		if err != nil {
			for _, i := range g {
				out[i].err = err
			}
			continue
		}
		tg := targets[node]
		if tg == nil {
			tg = &target{node: node}
			targets[node] = tg
			order = append(order, tg)
		}
		tg.groups = append(tg.groups, g)
	}
	var wg sync.WaitGroup
	for _, tg := range order {
		wg.Go(func() {
			p, ok := tg.node.(pipeliner)
			if !ok {
				return
			}
			for attempt := 0; attempt < 2; attempt++ {
				pipe := p.Pipeline()
				cmds := make([]*redis.Cmd, len(tg.groups))
				for i, g := range tg.groups {
					keys, args := renewArgs(leases, g)
					if attempt == 0 {
						cmds[i] = renewScript.EvalSha(ctx, pipe, keys, args...)
					} else {
						cmds[i] = renewScript.Eval(ctx, pipe, keys, args...)
					}
				}
				wait := waitCmd(ctx, pipe, ack)
				_, err := pipe.Exec(ctx)
				acked, _ := wait.Int64()
				noscript := false
				for i, g := range tg.groups {
					vals, cerr := cmds[i].Int64Slice()
					if cerr == nil && len(vals) != 2*len(g) {
						cerr = fmt.Errorf("renewlock: renew script returned %d values for %d keys", len(vals), len(g))
					}
					if cerr == nil && err != nil && cmds[i].Val() == nil {
						cerr = err
					}
					noscript = noscript || redis.HasErrorPrefix(cerr, "NOSCRIPT")
					reloadOnTopologyError(ctx, rdb, cerr)
					for j, idx := range g {
						out[idx] = renewResult{err: cerr, acked: acked, ackChecked: true}
						if cerr == nil {
							out[idx].code, out[idx].value = vals[2*j], uint64(max(vals[2*j+1], 0))
						}
					}
				}
				if !noscript {
					return
				}
				loaded.Store(false)
			}
		})
	}
	wg.Wait()
	return out
}

// renewArgs builds the keys and arguments of one renew script call for the
// leases at indexes g.
func renewArgs(leases []*lease, g []int) ([]string, []any) {
	keys := make([]string, len(g))
	args := make([]any, 0, 2*len(g))
	for j, idx := range g {
		le := leases[idx]
		keys[j] = le.rkey
		args = append(args, le.id, le.cfg.ttl.Milliseconds())
	}
	return keys, args
}
