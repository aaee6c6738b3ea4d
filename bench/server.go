package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is a redis-server process owned by the bench run. It mirrors
// internal/redistest, which needs a testing.TB: loopback only, a free port,
// a temporary directory, no persistence, killed when the bench exits (and by
// the kernel if the bench dies, through the parent-death signal).
type server struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startServer(binary string) (*server, error) {
	if _, err := exec.LookPath(binary); err != nil {
		return nil, fmt.Errorf("redis-server binary %q not found (apt-get install redis-server, or pass -redis-server): %w", binary, err)
	}
	dir, err := os.MkdirTemp("", "renewlock-bench-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s, err := launch(binary, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	_ = os.RemoveAll(dir)
	return nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func launch(binary, dir string, port int) (*server, error) {
	cmd := exec.Command(binary,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()

	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server on port %d exited: %s", port, log)
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on port %d not ready after 10s: %w", port, err)
		}
		time.Sleep(5 * time.Millisecond) // polling a process that is starting up
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

func (s *server) cleanup() {
	s.stop()
	_ = os.RemoveAll(s.dir)
}

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
