//go:build linux

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// status and list of a read-write lock (which no renewlock command takes):
// the kind, each holder with its mode, text and JSON.
func TestStatusListReadWriteLock(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := srv.Client()
	c, err := renewlock.New(rdb, renewlock.WithLogger(nil), renewlock.WithHolder("reader:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r1, err := c.AcquireRead(ctx, "rw")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.AcquireRead(ctx, "rw")
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	o := &OpConfig{Redis: RedisTarget{URL: srv.URL(), Source: "test"}, Prefix: renewlock.DefaultKeyPrefix, Stdout: &out}
	if err := Status(o, "rw"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind:    read-write lock", "holders: 2", "MODE", "reader:1  read"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("status lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := List(o, ""); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "read-write lock (read)"); n != 2 {
		t.Fatalf("list shows %d readers, want 2:\n%s", n, out.String())
	}

	out.Reset()
	o.JSON = true
	if err := Status(o, "rw"); err != nil {
		t.Fatal(err)
	}
	var j LockJSON
	if err := json.Unmarshal(out.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if j.Kind != "read-write lock" || len(j.Holders) != 2 || j.Holders[0].Mode != "read" || j.Holders[0].Token != r1.Token() ||
		j.Holders[1].Token != r2.Token() || j.Token != r2.Token() || j.Limit != 0 || j.Value != "" || j.PID != 1 {
		t.Fatalf("status --json = %s", out.String())
	}
}
