package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

type redisOptions = redis.Options

// getEventually retries GET until the connection pool has recovered.
func getEventually(t *testing.T, rdb *redis.Client, key string) string {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		var v string
		if v, err = rdb.Get(context.Background(), key).Result(); err == nil {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", key, err)
	return ""
}

func dbsizeEventually(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		var n int64
		if n, err = rdb.DBSize(context.Background()).Result(); err == nil {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("DBSIZE: %v", err)
	return 0
}
