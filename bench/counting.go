package main

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// counters are what one library instance sent to Redis, seen from the client.
type counters struct {
	roundTrips atomic.Int64 // go-redis hook: one per command or pipeline
	commands   atomic.Int64 // go-redis hook: commands, pipelines counted per command
	writes     atomic.Int64 // write(2) calls on every socket of the instance
	pipeMax    atomic.Int64 // largest pipeline seen by the hook
	pipelines  atomic.Int64 // pipelines seen by the hook
	pipeKeys   atomic.Int64 // keys passed to EVAL/EVALSHA inside pipelines
}

type counterSnap struct{ roundTrips, commands, writes int64 }

func (c *counters) snap() counterSnap {
	return counterSnap{c.roundTrips.Load(), c.commands.Load(), c.writes.Load()}
}

func (a counterSnap) sub(b counterSnap) counterSnap {
	return counterSnap{a.roundTrips - b.roundTrips, a.commands - b.commands, a.writes - b.writes}
}

// countingHook counts go-redis round trips: a pipeline is one round trip.
type countingHook struct{ c *counters }

func (h countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.c.roundTrips.Add(1)
		h.c.commands.Add(1)
		return next(ctx, cmd)
	}
}

func (h countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.c.roundTrips.Add(1)
		h.c.commands.Add(int64(len(cmds)))
		h.c.pipelines.Add(1)
		for _, c := range cmds {
			// EVALSHA sha numkeys key... arg...
			if a := c.Args(); len(a) > 2 {
				if n, ok := a[2].(int); ok {
					h.c.pipeKeys.Add(int64(n))
				}
			}
		}
		for {
			m := h.c.pipeMax.Load()
			if int64(len(cmds)) <= m || h.c.pipeMax.CompareAndSwap(m, int64(len(cmds))) {
				break
			}
		}
		return next(ctx, cmds)
	}
}

// countConn counts write(2) calls: with rueidis, which has no go-redis hook,
// that is the round-trip count (an automatic pipeline is one write).
type countConn struct {
	net.Conn
	c *counters
}

func (cc countConn) Write(p []byte) (int, error) {
	cc.c.writes.Add(1)
	return cc.Conn.Write(p)
}

// goRedisClient returns a go-redis client with default pool settings whose
// traffic is counted in c.
func goRedisClient(addr string, c *counters) *redis.Client {
	rdb := redis.NewClient(&redis.Options{
		Addr: addr,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countConn{conn, c}, nil
		},
	})
	rdb.AddHook(countingHook{c})
	return rdb
}

// rueidisDial is a rueidis DialCtxFn counting writes in c.
func rueidisDial(c *counters) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, dst string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
		conn, err := d.DialContext(ctx, "tcp", dst)
		if err != nil {
			return nil, err
		}
		return countConn{conn, c}, nil
	}
}
