package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replication helpers shared by the Sentinel group and the cluster: roles,
// replication state, and the min-replicas settings of a primary.

// pollInterval is how often the Wait helpers look again.
const pollInterval = 20 * time.Millisecond

// probeTimeout bounds one question to one server in the Wait helpers, so
// that a paused server is skipped instead of holding them up.
const probeTimeout = 300 * time.Millisecond

// Running reports whether the server process is running (not killed). A
// paused server is running.
func (s *Server) Running() bool { return s.PID() != 0 }

// ask runs f on a short-lived client of s, bounded by probeTimeout.
func (s *Server) ask(ctx context.Context, f func(ctx context.Context, rdb *redis.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: probeTimeout,
		ReadTimeout: probeTimeout, WriteTimeout: probeTimeout, ContextTimeoutEnabled: true, PoolSize: 1})
	defer rdb.Close()
	return f(ctx, rdb)
}

// Role returns the server's replication role as ROLE reports it: "master",
// "slave", or an error if it does not answer within a short timeout (it is
// killed or paused).
func (s *Server) Role(ctx context.Context) (string, error) {
	var role string
	err := s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
		v, err := rdb.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(v) == 0 {
			return fmt.Errorf("empty ROLE reply")
		}
		role = fmt.Sprint(v[0])
		return nil
	})
	return role, err
}

// WaitRole waits until the server reports role ("master" or "slave").
func (s *Server) WaitRole(ctx context.Context, role string) error {
	var last string
	for {
		got, err := s.Role(ctx)
		if err == nil && got == role {
			return nil
		}
		last = got
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: %s never became %s (last: %s): %w", s.Addr(), role, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// ReplicationInfo returns the fields of INFO replication.
func (s *Server) ReplicationInfo(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
		info, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				out[k] = v
			}
		}
		return nil
	})
	return out, err
}

// onlineReplicas returns the addresses of the replicas a primary's INFO
// replication lists as online.
func onlineReplicas(info map[string]string) []string {
	var out []string
	n, _ := strconv.Atoi(info["connected_slaves"])
	for i := range n {
		var ip, port, state string
		for _, kv := range strings.Split(info["slave"+strconv.Itoa(i)], ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			case "state":
				state = v
			}
		}
		if state == "online" {
			out = append(out, ip+":"+port)
		}
	}
	return out
}

// WaitReplicasOnline waits until the server is a primary with at least n
// replicas online, and every one of them has acknowledged all its writes
// (WAIT n).
func (s *Server) WaitReplicasOnline(ctx context.Context, n int) error {
	var last string
	for {
		info, err := s.ReplicationInfo(ctx)
		if err == nil && info["role"] == "master" && len(onlineReplicas(info)) >= n {
			var acked int64
			err = s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
				var err error
				acked, err = rdb.Do(ctx, "WAIT", n, 100).Int64()
				return err
			})
			if err == nil && acked >= int64(n) {
				return nil
			}
		}
		last = fmt.Sprintf("role %s, online %v", info["role"], onlineReplicas(info))
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: %s has no %d replicas in sync (last: %s): %w", s.Addr(), n, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// SetMinReplicas sets min-replicas-to-write and min-replicas-max-lag (in
// whole seconds, at least 1): while the server is a primary it refuses
// writes (NOREPLICAS) unless toWrite replicas acknowledged its stream within
// the last maxLag. A server keeps the setting when it changes role, and
// applies it whenever it is a primary.
func (s *Server) SetMinReplicas(ctx context.Context, toWrite int, maxLag time.Duration) error {
	secs := max(int64(maxLag/time.Second), 1)
	err := s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
		if err := rdb.ConfigSet(ctx, "min-replicas-max-lag", strconv.FormatInt(secs, 10)).Err(); err != nil {
			return err
		}
		return rdb.ConfigSet(ctx, "min-replicas-to-write", strconv.Itoa(toWrite)).Err()
	})
	if err != nil {
		return fmt.Errorf("redistest: min-replicas on %s: %w", s.Addr(), err)
	}
	return nil
}

// DisconnectReplicas closes the server's connections to its replicas
// (CLIENT KILL TYPE replica): they get nothing it writes from then on
// until they reconnect. Pause them first to keep them away: a replica
// stopped with SIGSTOP still reads what was sent before, from its socket
// buffer, once resumed; then it finds the connection closed.
func (s *Server) DisconnectReplicas(ctx context.Context) error {
	return s.ask(ctx, func(ctx context.Context, rdb *redis.Client) error {
		return rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err()
	})
}
