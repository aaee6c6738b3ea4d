package main

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// info returns the fields of one INFO section.
func info(ctx context.Context, rdb *redis.Client, section string) (map[string]string, error) {
	txt, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for _, line := range strings.Split(txt, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out, nil
}

// serverSnap is the part of the server's state the scenarios take deltas of.
type serverSnap struct {
	cpu  float64          // used_cpu_sys + used_cpu_user, seconds
	cmds map[string]int64 // calls per command (commandstats; includes calls made inside scripts)
	usec map[string]int64 // µs per command
}

func snapshot(ctx context.Context, rdb *redis.Client) (serverSnap, error) {
	var s serverSnap
	cpu, err := info(ctx, rdb, "cpu")
	if err != nil {
		return s, err
	}
	sys, _ := strconv.ParseFloat(cpu["used_cpu_sys"], 64)
	usr, _ := strconv.ParseFloat(cpu["used_cpu_user"], 64)
	s.cpu = sys + usr
	cs, err := info(ctx, rdb, "commandstats")
	if err != nil {
		return s, err
	}
	s.cmds = make(map[string]int64)
	s.usec = make(map[string]int64)
	for k, v := range cs {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			fk, fv, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(fv, 10, 64)
			switch fk {
			case "calls":
				s.cmds[name] = n
			case "usec":
				s.usec[name] = n
			}
		}
	}
	return s, nil
}

// cmdDelta returns per-command call counts between a and b, leaving out the
// commands the bench itself sends to read the statistics.
func cmdDelta(a, b serverSnap) map[string]int64 {
	out := make(map[string]int64)
	for k, v := range b.cmds {
		switch k {
		case "info", "config|set", "config|get", "slowlog|get", "slowlog|reset", "flushall":
			continue
		}
		if d := v - a.cmds[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
