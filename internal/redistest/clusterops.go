package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redisserver"
)

// Operations on a running cluster: who owns a slot, failovers, resharding.
// Views are asked of every node that answers within a short timeout, so a
// killed or paused node is skipped.

// ClusterNode is one line of a node's CLUSTER NODES: what that node
// believes about another (or itself).
type ClusterNode struct {
	ID       string
	Addr     string  // host:port
	Server   *Server // the test's server at Addr, nil if none
	Master   bool
	MasterID string // for a replica, its master's ID
	Failed   bool   // flagged fail or fail?
	Myself   bool
	Slots    [][2]int // inclusive ranges, for a master
}

// Owns reports whether the node serves slot.
func (n ClusterNode) Owns(slot int) bool {
	for _, r := range n.Slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// Lookup returns the cluster's server at addr, or nil.
func (c *Cluster) Lookup(addr string) *Server {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// View returns what node s believes the cluster is (CLUSTER NODES).
func (c *Cluster) View(ctx context.Context, s *Server) ([]ClusterNode, error) {
	var text string
	err := s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
		var err error
		text, err = rdb.ClusterNodes(ctx).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []ClusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := ClusterNode{ID: f[0], Addr: addr, Server: c.Lookup(addr)}
		for _, flag := range strings.Split(f[2], ",") {
			switch flag {
			case "master":
				n.Master = true
			case "fail", "fail?":
				n.Failed = true
			case "myself":
				n.Myself = true
			}
		}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") { // a slot being migrated
				continue
			}
			lo, hi, isRange := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 == nil && err2 == nil {
				n.Slots = append(n.Slots, [2]int{a, b})
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// views returns the view of every node that answers.
func (c *Cluster) views(ctx context.Context) map[*Server][]ClusterNode {
	out := map[*Server][]ClusterNode{}
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		if v, err := c.View(ctx, s); err == nil {
			out[s] = v
		}
	}
	return out
}

// SlotOwner returns the master serving slot, if every answering node
// agrees on it.
func (c *Cluster) SlotOwner(ctx context.Context, slot int) (*Server, error) {
	views := c.views(ctx)
	if len(views) == 0 {
		return nil, errors.New("redistest: no cluster node answered")
	}
	var owner string
	for s, v := range views {
		got := ""
		for _, n := range v {
			if n.Master && n.Owns(slot) {
				got = n.Addr
			}
		}
		if owner == "" {
			owner = got
		}
		if got == "" || got != owner {
			return nil, fmt.Errorf("redistest: nodes disagree on the owner of slot %d (%s says %q, another %q)", slot, s.Addr(), got, owner)
		}
	}
	srv := c.Lookup(owner)
	if srv == nil {
		return nil, fmt.Errorf("redistest: slot %d owned by %s, not a node of the test", slot, owner)
	}
	return srv, nil
}

// WaitSlotOwner waits until every answering node names the same master for
// slot, other than not (nil: any), and that master reports the master role;
// it returns the master.
func (c *Cluster) WaitSlotOwner(ctx context.Context, slot int, not *Server) (*Server, error) {
	var last string
	for {
		s, err := c.SlotOwner(ctx, slot)
		if err == nil && s != not {
			if role, rerr := s.Role(ctx); rerr == nil && role == "master" {
				return s, nil
			}
		}
		if err != nil {
			last = err.Error()
		} else {
			last = "owner " + s.Addr()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redistest: slot %d: no new owner (last: %s): %w", slot, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// ReplicasOf returns the running nodes that replicate master with their
// link up, by their own INFO replication (gossip may lag behind it).
func (c *Cluster) ReplicasOf(ctx context.Context, master *Server) ([]*Server, error) {
	var out []*Server
	for _, n := range c.nodes {
		if n == master || !n.Running() {
			continue
		}
		info, err := n.ReplicationInfo(ctx)
		if err != nil {
			continue // paused
		}
		if info["role"] == "slave" && info["master_link_status"] == "up" &&
			net.JoinHostPort(info["master_host"], info["master_port"]) == master.Addr() {
			out = append(out, n)
		}
	}
	return out, nil
}

// NodeID returns the cluster node ID of s (CLUSTER MYID).
func (c *Cluster) NodeID(ctx context.Context, s *Server) (string, error) {
	var id string
	err := s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
		var err error
		id, err = rdb.Do(ctx, "CLUSTER", "MYID").Text()
		return err
	})
	return id, err
}

// Failover sends CLUSTER FAILOVER to replica, with mode "" (the manual
// failover: the master stops its clients until the replica has caught up
// with its stream, then the replica takes over), "FORCE" (without the
// master's agreement) or "TAKEOVER" (without the other masters' either),
// and waits until replica serves its master's slots in every answering
// node's view.
func (c *Cluster) Failover(ctx context.Context, replica *Server, mode string) error {
	v, err := c.View(ctx, replica)
	if err != nil {
		return err
	}
	var masterID string
	for _, n := range v {
		if n.Myself {
			masterID = n.MasterID
		}
	}
	var slot = -1
	for _, n := range v {
		if n.ID == masterID && len(n.Slots) > 0 {
			slot = n.Slots[0][0]
		}
	}
	if slot < 0 {
		return fmt.Errorf("redistest: %s is not the replica of a master with slots", replica.Addr())
	}
	args := []any{"CLUSTER", "FAILOVER"}
	if mode != "" {
		args = append(args, mode)
	}
	// A manual failover that does not complete within 5 s (Redis's
	// CLUSTER_MF_TIMEOUT: the votes did not come) is abandoned by Redis
	// without a word: ask again.
	for {
		err = replica.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
			return rdb.Do(ctx, args...).Err()
		})
		if err != nil {
			return fmt.Errorf("redistest: CLUSTER FAILOVER %s on %s: %w", mode, replica.Addr(), err)
		}
		retry := time.Now().Add(6 * time.Second)
		for time.Now().Before(retry) {
			if owner, err := c.SlotOwner(ctx, slot); err == nil && owner == replica {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("redistest: CLUSTER FAILOVER %s on %s: slot %d not taken over: %w", mode, replica.Addr(), slot, ctx.Err())
			case <-time.After(pollInterval):
			}
		}
	}
}

// WaitHealthy waits until every running node answers cluster_state:ok and
// agrees on the owner of every slot, and every running replica's link to
// its master is up with the master's stream acknowledged. Do not call it
// while a node is paused.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var last string
	for {
		last = c.unhealthy(ctx)
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: cluster not healthy (%s): %w", last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// unhealthy returns why the cluster is not healthy, or "".
func (c *Cluster) unhealthy(ctx context.Context) string {
	replicas := map[*Server]int{}
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		var info string
		err := s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
			var err error
			info, err = rdb.ClusterInfo(ctx).Result()
			return err
		})
		if err != nil {
			return s.Addr() + ": " + err.Error()
		}
		if st := clusterInfoField(info, "cluster_state"); st != "ok" {
			return s.Addr() + ": cluster_state " + st
		}
		ri, err := s.ReplicationInfo(ctx)
		if err != nil {
			return s.Addr() + ": " + err.Error()
		}
		if ri["role"] == "slave" {
			if ri["master_link_status"] != "up" {
				return s.Addr() + ": replica link " + ri["master_link_status"]
			}
			m := c.Lookup(ri["master_host"] + ":" + ri["master_port"])
			if m == nil {
				return s.Addr() + ": replica of an unknown node"
			}
			replicas[m]++
		}
	}
	for slot := 0; slot < 16384; slot += 1024 {
		if _, err := c.SlotOwner(ctx, slot); err != nil {
			return err.Error()
		}
	}
	for m, n := range replicas {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := m.WaitReplicasOnline(wctx, n)
		cancel()
		if err != nil {
			return err.Error()
		}
	}
	return ""
}

// Masters returns the masters that serve slots in the view of the first
// answering node, sorted by their first slot.
func (c *Cluster) Masters(ctx context.Context) ([]ClusterNode, error) {
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		v, err := c.View(ctx, s)
		if err != nil {
			continue
		}
		var out []ClusterNode
		for _, n := range v {
			if n.Master && len(n.Slots) > 0 && !n.Failed {
				out = append(out, n)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Slots[0][0] < out[j].Slots[0][0] })
		return out, nil
	}
	return nil, errors.New("redistest: no cluster node answered")
}

// slotMap renders a view's configuration: which master serves which
// slots, and which node replicates which master.
func slotMap(v []ClusterNode) string {
	addr := map[string]string{}
	for _, n := range v {
		addr[n.ID] = n.Addr
	}
	var parts []string
	for _, n := range v {
		switch {
		case n.Master && len(n.Slots) > 0:
			parts = append(parts, fmt.Sprint(n.Addr, n.Slots))
		case !n.Master && n.MasterID != "":
			parts = append(parts, n.Addr+"→"+addr[n.MasterID])
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// WaitAgreement waits until every answering node has the same slot map
// and the same replicas for each master (after a reshard or a failover,
// the others learn it by gossip).
func (c *Cluster) WaitAgreement(ctx context.Context) error {
	var last string
	for {
		views := c.views(ctx)
		agree := len(views) > 0
		var first string
		for _, v := range views {
			m := slotMap(v)
			if first == "" {
				first = m
			} else if m != first {
				agree = false
				last = first + " / " + m
			}
		}
		if agree {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: nodes disagree on the slot map (%s): %w", last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// Reshard moves slots slots from master from to master to with
// `redis-cli --cluster reshard` (it migrates the keys of each slot with
// MIGRATE while clients keep using them, redirected by ASK, then hands the
// slot over), and returns redis-cli's output once every node agrees on the
// new slot map. redis-cli takes the slots from the beginning of from's
// slot ranges, and refuses to start while nodes disagree.
func (c *Cluster) Reshard(ctx context.Context, from, to *Server, slots int) (string, error) {
	if err := c.WaitAgreement(ctx); err != nil {
		return "", err
	}
	cli, err := exec.LookPath(CLIBinary())
	if err != nil {
		return "", err
	}
	fromID, err := c.NodeID(ctx, from)
	if err != nil {
		return "", err
	}
	toID, err := c.NodeID(ctx, to)
	if err != nil {
		return "", err
	}
	args := []string{"--cluster", "reshard", from.Addr(),
		"--cluster-from", fromID, "--cluster-to", toID,
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes"}
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	redisserver.SetParentDeathSignal(cmd.SysProcAttr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("redistest: %s %s: %w", cli, strings.Join(args, " "), err)
	}
	if strings.Contains(string(out), "[ERR]") {
		return string(out), fmt.Errorf("redistest: %s %s reported an error", cli, strings.Join(args, " "))
	}
	return string(out), c.WaitAgreement(ctx)
}
