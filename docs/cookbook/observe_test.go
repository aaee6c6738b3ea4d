package cookbook_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/renewlock/renewlock/docs/cookbook"
)

func TestInstrumented(t *testing.T) {
	locks, handler, err := cookbook.Instrumented(newRedis(t))
	if err != nil {
		t.Fatal(err)
	}
	defer locks.Close()
	l, err := locks.Acquire(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	_ = l.Release(context.Background())
	body := rec.Body.String()
	for _, want := range []string{
		`renewlock_acquisitions_total{outcome="ok",queued="false"} 1`,
		"renewlock_held_locks 1",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
