package cookbook_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// redisAddr is a redis-server started for the tests.
var redisAddr string

func TestMain(m *testing.M) {
	srv, err := redistest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	redisAddr = srv.Addr()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil))) // the recipes log
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

func newRedis(t *testing.T) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func newClient(t *testing.T, opts ...renewlock.Option) *renewlock.Client {
	t.Helper()
	c, err := renewlock.New(newRedis(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
