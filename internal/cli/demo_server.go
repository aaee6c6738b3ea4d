package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
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
func startRedisServer(ctx context.Context, bin string) (*demoServer, error) {
	dir, err := os.MkdirTemp("", "renewlock-demo-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no",
			"--protected-mode", "no", "--logfile", filepath.Join(dir, "redis.log"))
		configureChild(cmd, true) // dies with us, even if we are killed
		if err := cmd.Start(); err != nil {
			lastErr = err
			continue
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
			_ = os.RemoveAll(dir)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		version, err := waitForRedis(ctx, addr, exited)
		if err != nil {
			stop()
			lastErr = err
			if dir, err = os.MkdirTemp("", "renewlock-demo-"); err != nil {
				return nil, err
			}
			continue
		}
		return &demoServer{
			URL:  "redis://" + addr,
			Desc: fmt.Sprintf("a temporary redis-server %s on %s (pid %d)", version, addr, cmd.Process.Pid),
			stop: stop,
		}, nil
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("starting redis-server: %v", lastErr)
}

// waitForRedis polls addr until it answers PING, and returns its version.
func waitForRedis(ctx context.Context, addr string, exited <-chan struct{}) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			info, _ := rdb.Info(ctx, "server").Result()
			for _, line := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
					return v, nil
				}
			}
			return "", nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("redis-server on %s exited at start", addr)
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("redis-server on %s not ready after 10s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
