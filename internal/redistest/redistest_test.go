package redistest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLifecycle(t *testing.T) {
	s := Start(t)
	if s.Port() == 6379 {
		t.Fatal("harness must not use the shared Redis port")
	}
	rdb := s.Client(func(o *redisOptions) { o.MaxRetries = -1; o.ReadTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Pause()
	if err := rdb.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET answered while the server was paused")
	}
	s.Resume()
	if v := getEventually(t, rdb, "k"); v != "v" {
		t.Fatalf("after resume GET k = %q", v)
	}

	s.Restart()
	if n := dbsizeEventually(t, rdb); n != 0 {
		t.Fatalf("after restart DBSIZE = %d, want 0 (no persistence)", n)
	}

	s.Kill()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Restart()
	s.Pause() // cleanup must cope with a paused server
}

func TestLaunch(t *testing.T) {
	s, err := Launch()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	rdb := s.Client()
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}
