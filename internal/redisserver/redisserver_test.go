//go:build unix

package redisserver

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestMissingBinary(t *testing.T) {
	_, err := Start(Config{Binary: "/nonexistent/redis-server"})
	if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "apt-get install redis-server") {
		t.Fatalf("err = %v, want a clear 'not found' with the install hint", err)
	}
}

func TestStartStop(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if s.PID() == 0 || s.Port() == 6379 {
		t.Fatalf("pid %d port %d", s.PID(), s.Port())
	}
	s.Stop()
	if s.PID() != 0 {
		t.Fatal("still running after Stop")
	}
	if s2, err := Start(Config{Dir: dir}); err == nil {
		s2.Stop()
		t.Fatal("the temporary directory was not removed")
	}
}
