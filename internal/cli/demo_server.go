package cli

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redisserver"
)

// demoServer is the Redis the demo runs against when none was named.
type demoServer struct {
	URL  string
	Desc string
	stop func()
}

// startDemoServer starts a redis-server on a free loopback port if one is
// on PATH, else an embedded miniredis. The caller must call stop.
func startDemoServer(ctx context.Context, stderr io.Writer) (*demoServer, error) {
	if bin, err := exec.LookPath("redis-server"); err == nil {
		s, err := startRedisServer(ctx, bin)
		if err == nil {
			return s, nil
		}
		// Fall through: a broken install must not break the tour.
		fmt.Fprintf(stderr, "renewlock: demo: %v; using the embedded server instead\n", err)
	}
	return startMiniredis()
}

// startRedisServer runs bin without persistence in a temporary directory.
// It dies with us, even if we are killed (Linux, FreeBSD).
func startRedisServer(ctx context.Context, bin string) (*demoServer, error) {
	s, err := redisserver.Start(redisserver.Config{Binary: bin})
	if err != nil {
		return nil, err
	}
	return &demoServer{
		URL:  s.URL(),
		Desc: fmt.Sprintf("a temporary redis-server %s on %s (pid %d)", redisVersion(ctx, s.Addr()), s.Addr(), s.PID()),
		stop: s.Stop,
	}, nil
}

// redisVersion returns the version the server at addr reports, or "".
func redisVersion(ctx context.Context, addr string) string {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	info, _ := rdb.Info(ctx, "server").Result()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return ""
}

// startMiniredis starts an embedded miniredis on a loopback port. miniredis
// never expires keys by itself: a goroutine advances its clock with real
// time (FastForward), so leases run out as they would in Redis.
func startMiniredis() (*demoServer, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("starting the embedded Redis: %v", err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case now := <-tick.C:
				// Advance by the time that really passed, so a late tick
				// does not slow the lease clock down.
				m.FastForward(now.Sub(last))
				last = now
			case <-done:
				return
			}
		}
	}()
	return &demoServer{
		URL:  "redis://" + m.Addr(),
		Desc: fmt.Sprintf("an embedded miniredis on %s (no redis-server on PATH)", m.Addr()),
		stop: func() {
			close(done)
			wg.Wait()
			m.Close()
		},
	}, nil
}
