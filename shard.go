package renewlock

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/keyslot"
)

// Grants on a Redis Cluster travel on shard channels (SSUBSCRIBE /
// SPUBLISH, Redis ≥ 7): a release then reaches only the nodes of the key's
// shard, where a classic PUBLISH is copied to every node of the cluster.
// A shard channel must be in the slot of the key the script works on, so a
// Client has one grant channel per slot it waits in —
// PREFIX "grant:{" tag "}" id, the tag chosen to hash to that slot — each
// on its own connection to the slot's master (a go-redis PubSub may hold
// channels of one slot only: it resubscribes them all in one command). It
// is subscribed on the first contention in that slot, and closed once no
// Acquire has waited there for shardIdle.
//
// Scripts store a waiter's channel with a leading NUL byte to say it is a
// shard channel (notify in lib.lua). A Client uses them when its go-redis
// client is a ClusterClient and the cluster knows SPUBLISH; otherwise, or
// if asking failed, the classic grant channel — either kind reaches it, so
// clients of both kinds can wait for the same lock.
//
// Interleavings, besides the classic channel's (hub):
//   - a slot moves (resharding, failover): its master drops the
//     subscription (SUNSUBSCRIBE) or answers MOVED; the slot map is
//     reloaded and the channel subscribed again where the slot is now, and
//     that confirmation, like one after a reconnection, renews every
//     waiting lease at once, whose replies carry any grant missed meanwhile;
//   - a waiter leaves while the slot's subscription is being reaped or
//     replaced: a shard is reaped only with no waiter, under the hub's
//     lock; a waiter that comes after finds a new one, and joins a queue
//     only once that is confirmed;
//   - Close while a shard connection is being replaced: the replacement is
//     made under the hub's lock and only if the shard is still open.

// shardIdle is how long a slot's grant channel stays subscribed with
// nobody waiting there (a variable for tests, read by newHub).
var shardIdle = 30 * time.Second

// shardCheck is how often a shard's receiver checks that its connection
// is still to the slot's master (by the client's slot map).
const shardCheck = 500 * time.Millisecond

// shard is the grant channel of one slot. Its fields are guarded by the
// hub's mutex.
type shard struct {
	grantSub
	slot    int
	name    string // the channel
	started bool
	closed  bool
	users   int // waits using it
	idle    *time.Timer
	ps      *redis.PubSub
	addr    string // the node ps was made for
}

// grantPath is where a waiter hears of a grant: the Client's classic grant
// channel (sh nil), or the shard channel of its key's slot.
type grantPath struct {
	channel string // as the scripts store it
	slot    int    // the key's slot, if sharded
	sharded bool
	sh      *shard // once subscribing was asked for (sharded)
}

// sharding reports whether grants go on shard channels: the go-redis
// client is a ClusterClient and the cluster knows SPUBLISH. The answer is
// kept once Redis gave one (a NOPERM for COMMAND counts as no).
func (h *hub) sharding(ctx context.Context) bool {
	h.mu.Lock()
	mode := h.shardMode
	h.mu.Unlock()
	if mode != 0 {
		return mode > 0
	}
	if _, ok := h.rdb.(*redis.ClusterClient); !ok {
		mode = -1
	} else {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		vals, err := h.rdb.Do(cctx, "COMMAND", "INFO", "SPUBLISH").Slice()
		cancel()
		switch {
		case err == nil && len(vals) == 1 && vals[0] != nil:
			mode = 1
		case err == nil || isReplyError(err):
			mode = -1
		default:
			return false // ask again next time
		}
	}
	h.mu.Lock()
	h.shardMode = mode
	h.mu.Unlock()
	return mode > 0
}

// path returns the grant path of a waiter for rkey. A sharded path takes a
// use of its slot's shard, if it is subscribed already; done gives it back.
func (h *hub) path(ctx context.Context, rkey string) grantPath {
	if !h.sharding(ctx) {
		return grantPath{channel: h.channel}
	}
	slot := keyslot.Slot(rkey)
	p := grantPath{channel: "\x00" + h.shardChannel(slot), slot: slot, sharded: true}
	h.mu.Lock()
	defer h.mu.Unlock()
	if sh := h.shards[slot]; sh != nil && !sh.closed {
		h.use(sh)
		p.sh = sh
	}
	return p
}

// mine returns the channel under which this Client's waiters for rkey are
// stored, for a release to recognize them (it asks Redis nothing: a Client
// that has not waited yet has no waiter to recognize).
func (h *hub) mine(rkey string) string {
	h.mu.Lock()
	sharded := h.shardMode > 0
	h.mu.Unlock()
	if !sharded {
		return h.channel
	}
	return "\x00" + h.shardChannel(keyslot.Slot(rkey))
}

// shardChannel returns this Client's grant channel in slot.
func (h *hub) shardChannel(slot int) string {
	return h.prefix + "grant:{" + keyslot.Tag(slot) + "}" + h.id
}

// use counts a wait on sh. h.mu is held.
func (h *hub) use(sh *shard) {
	sh.users++
	if sh.idle != nil {
		sh.idle.Stop()
		sh.idle = nil
	}
}

// pathReady returns a channel closed once grants on p can reach this Client
// (or subscribing failed), subscribing if that has not begun.
func (h *hub) pathReady(p *grantPath) <-chan struct{} {
	if !p.sharded {
		return h.subscribe()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.sh == nil {
		sh := h.shards[p.slot]
		if sh == nil || sh.closed {
			sh = &shard{grantSub: newGrantSub(), slot: p.slot, name: p.channel[1:]}
			h.shards[p.slot] = sh
		}
		h.use(sh)
		p.sh = sh
	}
	sh := p.sh
	if !sh.started && !h.closed {
		sh.started = true
		h.wg.Add(1)
		go h.runShard(sh)
	}
	return sh.ready
}

// isReady reports, without subscribing, whether grants on p can reach this
// Client.
func (h *hub) isReady(p *grantPath) bool {
	if !p.sharded {
		return isClosed(h.ready)
	}
	if p.sh == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return p.sh.seen && p.sh.err == nil
}

// pathFailure returns why subscribing to p's channel failed, or nil.
func (h *hub) pathFailure(p *grantPath) error {
	if !p.sharded {
		return h.failure()
	}
	if p.sh == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return p.sh.err
}

// done gives back p's use of its shard: with no wait left, the shard is
// closed after shardIdle.
func (h *hub) done(p *grantPath) {
	if p.sh == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sh := p.sh
	p.sh = nil
	sh.users--
	if sh.users == 0 && !sh.closed && !h.closed {
		sh.idle = time.AfterFunc(h.shardIdle, func() { h.reap(sh) })
	}
}

// reap closes sh if nobody has waited on it since it went idle.
func (h *hub) reap(sh *shard) {
	h.mu.Lock()
	if sh.users > 0 || sh.closed || h.closed {
		h.mu.Unlock()
		return
	}
	sh.closed = true
	if h.shards[sh.slot] == sh {
		delete(h.shards, sh.slot)
	}
	ps := sh.ps
	h.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// shardConn returns sh's PubSub, subscribing on a new one if it has none;
// nil once sh is closed.
func (h *hub) shardConn(sh *shard) *redis.PubSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sh.closed || h.closed {
		return nil
	}
	if sh.ps == nil {
		// The connection goes to the master of the channel's slot, by the
		// client's slot map; go-redis picks it again at every reconnection.
		cc := h.rdb.(*redis.ClusterClient)
		sh.addr = h.masterOf(cc, sh.name)
		sh.ps = cc.SSubscribe(context.Background(), sh.name)
	}
	return sh.ps
}

// masterOf returns the address of the master of name's slot by cc's slot
// map, or "" if it has none.
func (h *hub) masterOf(cc *redis.ClusterClient, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), shardCheck)
	defer cancel()
	node, err := cc.MasterForKey(ctx, name)
	if err != nil {
		return ""
	}
	return node.Options().Addr
}

// misplaced reports whether ps, sh's subscription, is on a node that is no
// longer its slot's master: a failover made that node a replica, which
// Redis 7.0 does not tell subscribers, and a replica does not always
// deliver its shard's messages.
func (h *hub) misplaced(sh *shard, ps *redis.PubSub) bool {
	now := h.masterOf(h.rdb.(*redis.ClusterClient), sh.name)
	h.mu.Lock()
	defer h.mu.Unlock()
	return sh.ps == ps && now != "" && sh.addr != "" && now != sh.addr
}

// moved drops ps, sh's subscription on a node that no longer serves the
// slot, after having the slot map reloaded: the next shardConn subscribes
// where the slot is now.
func (h *hub) moved(sh *shard, ps *redis.PubSub) {
	h.rdb.(*redis.ClusterClient).ReloadState(context.Background())
	h.mu.Lock()
	if sh.ps == ps {
		sh.ps = nil
	}
	h.mu.Unlock()
	_ = ps.Close()
}

// runShard receives sh's messages until sh is closed.
func (h *hub) runShard(sh *shard) {
	defer h.wg.Done()
	ctx := context.Background()
	backoff := 10 * time.Millisecond
	pause := func() bool {
		select {
		case <-time.After(backoff):
		case <-h.stop:
			return false
		}
		backoff = min(2*backoff, time.Second)
		return true
	}
	heard := time.Now()
	for {
		ps := h.shardConn(sh)
		if ps == nil {
			return
		}
		msg, err := ps.ReceiveTimeout(ctx, shardCheck)
		if err != nil {
			var ne interface{ Timeout() bool }
			switch {
			case errors.Is(err, redis.ErrClosed):
				// Reaped, or replaced by moved: shardConn tells which.
				continue
			case errors.As(err, &ne) && ne.Timeout():
				if h.misplaced(sh, ps) {
					h.moved(sh, ps)
				} else if time.Since(heard) >= pubsubHealthCheck {
					heard = time.Now()
					_ = ps.Ping(ctx) // a dead connection fails the next read
				}
				continue
			case isReplyError(err):
				if rerr := classify(err, ""); isRejected(rerr) {
					h.shardFail(sh, rerr) // the user may not subscribe: waiting cannot work
				} else {
					h.moved(sh, ps) // MOVED, CLUSTERDOWN…: subscribe again where the slot is
				}
			default:
				// The connection failed: go-redis reconnects on the next
				// read, to the slot's master by a reloaded map.
				reloadOnTopologyError(ctx, h.rdb, err)
			}
			if !pause() {
				return
			}
			continue
		}
		backoff = 10 * time.Millisecond
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel == sh.name {
				h.deliver(m.Payload)
			}
		case *redis.Subscription:
			switch m.Kind {
			case "ssubscribe":
				h.shardConfirmed(sh)
			case "sunsubscribe":
				// The node gave up the slot (resharding, or it turned
				// replica): subscribe again where the slot is now.
				h.moved(sh, ps)
			}
		}
	}
}

// shardConfirmed handles the confirmation of sh's subscription: the first
// lets waiters queue; a later one follows a reconnection or a move, during
// which grants may have been missed.
func (h *hub) shardConfirmed(sh *shard) {
	h.mu.Lock()
	first := sh.markConfirmed()
	h.mu.Unlock()
	if !first {
		h.eng.pollWaiting()
	}
}

// shardFail records that subscribing to sh's channel failed with err (the
// user may not SSUBSCRIBE): from now on this Client waits on its classic
// grant channel (see wait).
func (h *hub) shardFail(sh *shard, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shardMode = -1
	sh.markFailed(err)
}

// closeShards closes every shard's connection. h.closed is set.
func (h *hub) closeShards() {
	h.mu.Lock()
	var conns []*redis.PubSub
	for slot, sh := range h.shards {
		sh.closed = true
		if sh.idle != nil {
			sh.idle.Stop()
		}
		if sh.ps != nil {
			conns = append(conns, sh.ps)
		}
		delete(h.shards, slot)
	}
	h.mu.Unlock()
	for _, ps := range conns {
		_ = ps.Close()
	}
}
