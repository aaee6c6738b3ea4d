package redlock_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
	"github.com/renewlock/renewlock/redlock"
)

// exampleAddrs are three redis-servers started for the examples.
var exampleAddrs []string

// silent drops go-redis's own log lines (dial failures of masters the
// tests killed on purpose).
type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(silent{})
	var servers []*redistest.Server
	for range 3 {
		srv, err := redistest.Launch()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		servers = append(servers, srv)
		exampleAddrs = append(exampleAddrs, srv.Addr())
	}
	code := m.Run()
	for _, s := range servers {
		s.Stop()
	}
	if code == 0 {
		// go-redis redials a killed master from a goroutine that sleeps
		// a second between tries and notices its client was closed only
		// after that: its own, and it ends by itself.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var keySeq atomic.Int64

// uniqueKey returns a key no other test uses.
func uniqueKey(t testing.TB) string {
	return fmt.Sprintf("%s/%d", t.Name(), keySeq.Add(1))
}

var quiet = renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// cluster is N independent masters started for one test.
type cluster struct {
	t       testing.TB
	servers []*redistest.Server
}

// startMasters starts n redis-servers (extra: config directives for each).
func startMasters(t testing.TB, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for range n {
		c.servers = append(c.servers, redistest.Start(t, extra...))
	}
	return c
}

// clients returns one new go-redis client per master, with hooks added if
// given (one hook per master, or nil).
func (c *cluster) clients(hooks ...redis.Hook) []redis.UniversalClient {
	out := make([]redis.UniversalClient, len(c.servers))
	for i, s := range c.servers {
		rdb := s.Client()
		if i < len(hooks) && hooks[i] != nil {
			rdb.AddHook(hooks[i])
		}
		out[i] = rdb
	}
	return out
}

// newClient returns a redlock Client on new connections to every master,
// closed when the test ends.
func (c *cluster) newClient(opts ...renewlock.Option) *redlock.Client {
	c.t.Helper()
	return c.newClientOn(c.clients(), opts...)
}

func (c *cluster) newClientOn(masters []redis.UniversalClient, opts ...renewlock.Option) *redlock.Client {
	c.t.Helper()
	rl, err := redlock.New(masters, append([]renewlock.Option{quiet}, opts...)...)
	if err != nil {
		c.t.Fatalf("redlock.New: %v", err)
	}
	c.t.Cleanup(func() { _ = rl.Close() })
	return rl
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// closedWithin reports whether ch closes within d.
func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	default:
	}
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}
