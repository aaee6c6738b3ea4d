// Package redistest starts real redis-server processes for tests: each on a
// free loopback port, in a temporary directory, without persistence unless
// asked. A Server can be paused (SIGSTOP), resumed, killed and restarted on
// the same port, which is how the tests inject faults. Servers stop when the
// test ends. Tests never touch a Redis the machine already runs.
package redistest

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
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Binary is the redis-server executable used; override with $REDIS_SERVER.
func Binary() string {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b
	}
	return "redis-server"
}

// Server is one redis-server process owned by a test.
type Server struct {
	t      testing.TB // nil for Launch
	dir    string
	ownDir bool // remove dir on Stop
	port   int
	args   []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// Start launches a redis-server for t on a free loopback port and stops it
// when t ends. Extra config directives (e.g. "--appendonly", "yes") are
// appended to the command line. It fails t with a clear message if
// redis-server is not installed.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s, err := launchIn(t.TempDir(), extra)
	if err != nil {
		t.Fatal(err)
	}
	s.t = t
	t.Cleanup(s.Stop)
	return s
}

// Launch is Start for code without a testing.TB (TestMain, examples,
// benchmark programs): the caller must call Stop, and a failing Pause,
// Resume or Restart panics instead of failing a test.
func Launch(extra ...string) (*Server, error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	s, err := launchIn(dir, extra)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.ownDir = true
	return s, nil
}

func launchIn(dir string, extra []string) (*Server, error) {
	if _, err := exec.LookPath(Binary()); err != nil {
		return nil, fmt.Errorf("redistest: %s not found in PATH: install Redis (apt-get install redis-server) or set $REDIS_SERVER: %v", Binary(), err)
	}
	s := &Server{dir: dir, args: extra}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.port, err = freePort()
		if err != nil {
			continue
		}
		if err = s.launch(); err == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("redistest: starting redis-server: %v", err)
}

func (s *Server) fatalf(format string, args ...any) {
	if s.t != nil {
		s.t.Helper()
		s.fatalf(format, args...)
	}
	panic(fmt.Sprintf(format, args...))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the process and waits until it answers PING.
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
	args = append(args, s.args...)
	cmd := exec.Command(Binary(), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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

// PID returns the process id of the running server, or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Client returns a go-redis client for this server, closed when the test
// ends (for a Launch server, the caller closes it). opts may adjust the
// options (Addr is set already).
func (s *Server) Client(opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: s.Addr()}
	for _, f := range opts {
		f(o)
	}
	rdb := redis.NewClient(o)
	if s.t != nil {
		s.t.Cleanup(func() { _ = rdb.Close() })
	}
	return rdb
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.fatalf("redistest: server on port %d is not running", s.port)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.fatalf("redistest: signal %v to redis-server: %v", sig, err)
	}
	s.paused = sig == syscall.SIGSTOP
}

// Pause stops the server process (SIGSTOP): connections stay open but
// nothing is answered, like a frozen VM or a long GC pause.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Kill ends the server with SIGKILL; without persistence all data is lost.
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

// Restart starts the server again on the same port after Kill (or kills it
// first if it is running). The data set is empty unless persistence was
// configured.
func (s *Server) Restart() {
	s.kill()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.launch(); err == nil {
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	s.fatalf("redistest: restarting redis-server on port %d: %v", s.port, err)
}

// Stop kills the server. It is called automatically when the test ends.
func (s *Server) Stop() {
	s.kill()
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}
