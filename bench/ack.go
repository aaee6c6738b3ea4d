package main

// Scenario ACK: what WithReplicaAck costs — renewlock on one primary with
// two replicas (started here, loopback, no persistence), without replica
// acknowledgement and asking 1 and 2 replicas (WAIT after each acquisition,
// hand-off and renewal, on the same connection). The variants take turns
// in every round, in a rotating order.
//
//	cd bench && go run . -scenarios ack
//
// Measured: serial acquire+release pairs/s (1 goroutine, new key each
// time) with latency and round trips per pair; parallel pairs/s (-s2-
// goroutines, distinct keys: acknowledged calls cannot share a pipeline
// with other calls, since WAIT counts its connection's writes); hand-off
// (release → a waiter in another client holds).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redisserver"
)

// ackRes is the outcome of scenario ACK.
type ackRes struct {
	Primary    string                 `json:"primary"`
	Variants   map[string]string      `json:"variants"`
	Serial     map[string]*pairRes    `json:"serial"`
	Parallel   map[string]*pairRes    `json:"parallel"`
	RoundTrips map[string]float64     `json:"round_trips_per_pair"`
	Handoff    map[string]*handoffRes `json:"handoff"`
	order      []string
}

// ackTimeout is the WAIT timeout of the acknowledging variants.
const ackTimeout = 100 * time.Millisecond

func openRenewlockAck(n int) func(string, *counters) (instance, error) {
	return func(addr string, c *counters) (instance, error) {
		rdb := goRedisClient(addr, c)
		opts := []renewlock.Option{renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
		if n > 0 {
			opts = append(opts, renewlock.WithReplicaAck(n, ackTimeout))
		}
		rl, err := renewlock.New(rdb, opts...)
		if err != nil {
			_ = rdb.Close()
			return nil, err
		}
		return &renewlockInst{rdb, rl}, nil
	}
}

func (b *bench) ackScenario(bin string) (*ackRes, error) {
	primary, err := redisserver.Start(redisserver.Config{Binary: bin})
	if err != nil {
		return nil, err
	}
	defer primary.Stop()
	for range 2 {
		replica, err := redisserver.Start(redisserver.Config{Binary: bin, Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())}})
		if err != nil {
			return nil, err
		}
		defer replica.Stop()
	}
	ctx := context.Background()
	admin := goRedisClient(primary.Addr(), &counters{})
	defer admin.Close()
	for { // both replicas in sync
		info, err := admin.Info(ctx, "replication").Result()
		if err != nil {
			return nil, err
		}
		if countOnline(info) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := &ackRes{Primary: primary.Addr(), Variants: map[string]string{}, Serial: map[string]*pairRes{}, Parallel: map[string]*pairRes{},
		RoundTrips: map[string]float64{}, Handoff: map[string]*handoffRes{}}
	var libs []*libState
	for _, n := range []int{0, 1, 2} {
		name, note := "no ack", "renewlock, no replica acknowledgement"
		if n > 0 {
			name, note = fmt.Sprintf("ack %d", n), fmt.Sprintf("renewlock, WithReplicaAck(%d, %v)", n, ackTimeout)
		}
		ls := &libState{library: library{name: name, note: note}, ctr: &counters{}}
		for i := range ls.inst {
			inst, err := openRenewlockAck(n)(primary.Addr(), ls.ctr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			defer inst.close()
			ls.inst[i] = inst
		}
		libs = append(libs, ls)
		res.Variants[name] = note
		res.order = append(res.order, name)
		res.Serial[name], res.Parallel[name], res.Handoff[name] = &pairRes{}, &pairRes{}, &handoffRes{}
	}
	for _, ls := range libs {
		if err := warmUp(ctx, ls, "ackwarm"); err != nil {
			return nil, err
		}
		if res.RoundTrips[ls.name], err = roundTripsPerPair(ctx, ls, "ackrt"); err != nil {
			return nil, err
		}
	}
	for r := 0; r < b.cfg.Rounds; r++ {
		k := r % len(libs)
		for _, ls := range append(slices.Clone(libs[k:]), libs[:k]...) {
			logf("ACK round %d %s serial", r+1, ls.name)
			b.pairs(ls, fmt.Sprintf("ack1:%d", r), 1, b.cfg.S1, res.Serial[ls.name])
			logf("ACK round %d %s parallel", r+1, ls.name)
			b.pairs(ls, fmt.Sprintf("ack2:%d", r), b.cfg.S2Workers, b.cfg.S2, res.Parallel[ls.name])
			logf("ACK round %d %s hand-off", r+1, ls.name)
			b.handoff(ls, fmt.Sprintf("ack4:%d", r), b.cfg.S4, false, res.Handoff[ls.name])
		}
	}
	for _, name := range res.order {
		res.Serial[name].finish()
		res.Parallel[name].finish()
		res.Handoff[name].Handoff = summarize(res.Handoff[name].samples)
	}
	return res, nil
}

// countOnline counts the replicas INFO replication reports online.
func countOnline(info string) int {
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "state=online") {
			n++
		}
	}
	return n
}

func writeACK(p func(string, ...any), r *ackRes, cfg config) {
	p("### ACK what replica acknowledgement costs: one primary, two replicas (%d rounds)\n\n", cfg.Rounds)
	for _, name := range r.order {
		p("- %s: %s\n", name, r.Variants[name])
	}
	base := r.order[0]
	p("\nSerial: 1 goroutine, new key each time, acquire+release; parallel: %d goroutines, distinct keys.\n\n", cfg.S2Workers)
	p("| variant | serial pairs/s | × no ack | p50 ms | p99 ms | round trips per pair | parallel pairs/s | × no ack | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range r.order {
		s, pp := r.Serial[name], r.Parallel[name]
		p("| %s | %.0f | %.2f | %.3f | %.3f | %.2f | %.0f | %.2f | %d |\n", name, s.PairsPerSec, s.PairsPerSec/r.Serial[base].PairsPerSec,
			s.Latency.P50, s.Latency.P99, r.RoundTrips[name], pp.PairsPerSec, pp.PairsPerSec/r.Parallel[base].PairsPerSec, s.Errors+pp.Errors)
	}
	p("\nHand-off: release → a waiter in another client holds.\n\n")
	p("| variant | p50 ms | p99 ms | max ms | samples | errors |\n|---|---:|---:|---:|---:|---:|\n")
	for _, name := range r.order {
		h := r.Handoff[name]
		p("| %s | %.3f | %.3f | %.3f | %d | %d |\n", name, h.Handoff.P50, h.Handoff.P99, h.Handoff.Max, h.Handoff.N, h.Errors)
	}
	p("\n")
}
