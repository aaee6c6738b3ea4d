package renewlock_test

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
)

// redisAddr is the address of a redis-server started for the examples.
var redisAddr string

func TestMain(m *testing.M) {
	srv, err := redistest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	redisAddr = srv.Addr()
	code := m.Run()
	srv.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
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

// newClient returns a renewlock Client on rdb, closed when the test ends.
func newClient(t testing.TB, rdb redis.UniversalClient, opts ...renewlock.Option) *renewlock.Client {
	t.Helper()
	c, err := renewlock.New(rdb, append([]renewlock.Option{quiet}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// setup starts a Redis server and one client on it.
func setup(t testing.TB, opts ...renewlock.Option) (*redistest.Server, *redis.Client, *renewlock.Client) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	return srv, rdb, newClient(t, rdb, opts...)
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

// startForFuzz starts a Redis server for a fuzz target.
func startForFuzz(f *testing.F) *redistest.Server { return redistest.Start(f) }
