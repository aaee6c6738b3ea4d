// Package redistest starts real redis-server processes for tests: each on a
// free loopback port, in a temporary directory, without persistence unless
// asked. A Server can be paused (SIGSTOP), resumed, killed and restarted on
// the same port, which is how the tests inject faults. Servers stop when the
// test ends. Tests never touch a Redis the machine already runs.
package redistest

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redisserver"
)

// Binary is the redis-server executable used; override with $REDIS_SERVER.
func Binary() string { return redisserver.Binary() }

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) { return redisserver.FreePort() }

// Server is one redis-server process owned by a test. Its methods fail the
// test (or, for a Launch server, panic) instead of returning errors.
type Server struct {
	*redisserver.Server
	t testing.TB // nil for Launch
}

// Start launches a redis-server for t on a free loopback port and stops it
// when t ends. Extra config directives (e.g. "--appendonly", "yes") are
// appended to the command line. It fails t with a clear message if
// redis-server is not installed.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s, err := redisserver.Start(redisserver.Config{Dir: t.TempDir(), Args: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &Server{Server: s, t: t}
}

// StartEnv is Start with extra environment variables ("NAME=value") for
// the server process, e.g. a clockshim.Clock's Env.
func StartEnv(t testing.TB, env []string, extra ...string) *Server {
	t.Helper()
	s, err := redisserver.Start(redisserver.Config{Dir: t.TempDir(), Args: extra, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &Server{Server: s, t: t}
}

// Launch is Start for code without a testing.TB (TestMain, examples): the
// caller must call Stop, and a failing Pause, Resume or Restart panics.
func Launch(extra ...string) (*Server, error) {
	s, err := redisserver.Start(redisserver.Config{Args: extra})
	if err != nil {
		return nil, err
	}
	return &Server{Server: s}, nil
}

// check fails the test on err (panics for a Launch server).
func (s *Server) check(err error) {
	if err == nil {
		return
	}
	if s.t == nil {
		panic(err)
	}
	s.t.Helper()
	s.t.Fatal(err)
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

// Pause stops the server process (SIGSTOP): connections stay open but
// nothing is answered, like a frozen VM or a long GC pause.
func (s *Server) Pause() { s.check(s.Server.Pause()) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.check(s.Server.Resume()) }

// Restart starts the server again on the same port after Kill (or kills it
// first if it is running). The data set is empty unless persistence was
// configured.
func (s *Server) Restart() { s.check(s.Server.Restart()) }
