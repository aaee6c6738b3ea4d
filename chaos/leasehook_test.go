package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseHook records only what proves a lease: {1, token} per key from an
// acquisition or a renewal; not a release's {1, handed}, not a redlock
// write-back's {1, token} for two keys, not a queued reply, not an error.
func TestLeaseHookRecordsConfirmedLeases(t *testing.T) {
	h := NewHistory()
	hook := &LeaseHook{H: h, Prefix: "renewlock:", TTL: time.Second}
	ctx := context.Background()
	reply := func(val any, err error, args ...any) redis.Cmder {
		c := redis.NewCmd(ctx, args...)
		c.SetVal(val)
		c.SetErr(err)
		return c
	}
	const tok = 1796050067217126
	cmds := []redis.Cmder{
		reply([]any{int64(1), int64(tok)}, nil, "evalsha", "sha", 1, "renewlock:a", "id", 1000),                                                    // acquired
		reply([]any{int64(1), int64(tok + 1), int64(0), int64(0)}, nil, "evalsha", "sha", 2, "renewlock:b", "renewlock:c", "id", 1000, "id", 1000), // renewed b, lost c
		reply([]any{int64(1), int64(1)}, nil, "evalsha", "sha", 1, "renewlock:d", "id", "chan"),                                                    // released, handed off
		reply([]any{int64(1), int64(tok + 2)}, nil, "evalsha", "sha", 2, "renewlock:e", "renewlock:redlock-floor:e", "id", tok+2),                  // write-back
		reply([]any{int64(2), int64(500), int64(1)}, nil, "evalsha", "sha", 1, "renewlock:f", "id", 1000),                                          // queued
		reply(nil, redis.ErrClosed, "evalsha", "sha", 1, "renewlock:g", "id", 1000),                                                                // failed
		reply("OK", nil, "set", "renewlock:h", "x"),
	}
	if err := hook.ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return nil })(ctx, cmds); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, s := range h.samples {
		if !s.Owned || s.PTTL != time.Second {
			t.Errorf("sample %+v", s)
		}
		got[s.Key] = s.Token
	}
	want := map[string]uint64{"a": tok, "b": tok + 1}
	if len(got) != len(want) || got["a"] != want["a"] || got["b"] != want["b"] {
		t.Fatalf("samples for %v, want %v", got, want)
	}
}
