//go:build unix

package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config says how to run a server. The zero value is a plain server.
type Config struct {
	// Binary is the redis-server executable. Default: $REDIS_SERVER, else
	// "redis-server" from PATH.
	Binary string
	// Dir is the working directory (logs, persistence files). Default: a new
	// temporary directory, removed by Stop.
	Dir string
	// Args are extra config directives, e.g. "--appendonly", "yes"; they
	// override the defaults (no persistence, loopback only).
	Args []string
	// Env are extra environment variables ("NAME=value") for the process,
	// on top of this process's environment; e.g. a clock shim's.
	Env []string
}

// Server is one redis-server process.
type Server struct {
	binary string
	dir    string
	ownDir bool
	args   []string
	env    []string
	port   int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// Binary returns the default redis-server executable: $REDIS_SERVER if set,
// else "redis-server" (looked up in PATH).
func Binary() string {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b
	}
	return "redis-server"
}

// Start launches a server on a free loopback port and returns once it
// answers PING.
func Start(cfg Config) (*Server, error) {
	bin := cfg.Binary
	if bin == "" {
		bin = Binary()
	}
	if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("redisserver: %s not found: install Redis (apt-get install redis-server) or set $REDIS_SERVER: %w", bin, err)
	}
	s := &Server{binary: bin, dir: cfg.Dir, args: cfg.Args, env: cfg.Env}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "redisserver-")
		if err != nil {
			return nil, err
		}
		s.dir, s.ownDir = dir, true
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = FreePort(); err != nil {
			continue
		}
		if err = s.launch(); err == nil {
			return s, nil
		}
	}
	s.removeDir()
	return nil, fmt.Errorf("redisserver: starting %s: %w", bin, err)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the process on s.port and waits until it answers PING.
func (s *Server) launch() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}
	cmd := exec.Command(s.binary, append(args, s.args...)...)
	if len(s.env) > 0 {
		cmd.Env = append(os.Environ(), s.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	SetParentDeathSignal(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited, s.paused = cmd, exited, false
	s.mu.Unlock()

	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, log)
		default:
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d not ready after 10s: %v", s.port, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// URL returns "redis://127.0.0.1:PORT".
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Dir returns the server's working directory.
func (s *Server) Dir() string { return s.dir }

// PID returns the process id of the running server, or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redisserver: server on port %d is not running", s.port)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("redisserver: signal %v to redis-server: %w", sig, err)
	}
	s.paused = sig == syscall.SIGSTOP
	return nil
}

// Pause stops the process (SIGSTOP): connections stay open but nothing is
// answered, like a frozen VM or a long GC pause.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

// Kill ends the process with SIGKILL; without persistence all data is lost.
func (s *Server) Kill() { s.kill() }

func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited, paused := s.cmd, s.exited, s.paused
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	<-exited
}

// Restart starts the server again on the same port (killing it first if it
// runs). The data set is empty unless persistence was configured.
func (s *Server) Restart() error {
	s.kill()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.launch(); err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return fmt.Errorf("redisserver: restarting redis-server on port %d: %w", s.port, err)
}

// Stop kills the server and removes its directory if Start created it.
func (s *Server) Stop() {
	s.kill()
	s.removeDir()
}

func (s *Server) removeDir() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}
