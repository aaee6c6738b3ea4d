//go:build linux

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redistest"
)

// secret is the restricted user's password; it must never be printed.
const secret = "s3cretPW-9f2"

// userURL returns the URL that logs in to srv as user with password.
func userURL(srv *redistest.Server, user, password string) string {
	return strings.Replace(srv.URL(), "redis://", "redis://"+user+":"+password+"@", 1)
}

// setUser creates (or resets) an ACL user on srv with the given rules.
func setUser(t *testing.T, srv *redistest.Server, user string, rules ...string) {
	t.Helper()
	args := append([]any{"ACL", "SETUSER", user, "reset", "on", ">" + secret}, toAny(rules)...)
	if err := srv.Client().Do(context.Background(), args...).Err(); err != nil {
		t.Fatal(err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// checkExit runs renewlock and checks its exit status, that the stderr
// line has every string in want, and that the password is not shown.
func checkExit(t *testing.T, environ []string, wantCode int, want []string, args ...string) time.Duration {
	t.Helper()
	begin := time.Now()
	code, out, errOut := runTool(t, environ, args...)
	took := time.Since(begin)
	if code != wantCode {
		t.Fatalf("%v: exit %d, want %d; stderr %q", args, code, wantCode, errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Fatalf("%v: stderr %q lacks %q", args, errOut, w)
		}
	}
	if strings.Contains(out+errOut, secret) {
		t.Fatalf("%v: the password is shown: stdout %q, stderr %q", args, out, errOut)
	}
	return took
}

// 11. An ACL user whose key patterns do not cover the lock: every
// subcommand exits 77 (EX_NOPERM) naming a permission problem and the
// README section with the ACL, and a blocking run does not wait.
func TestPermissionDenied(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	holdLock(t, srv, key, 10*time.Second) // so that status, list and release have a lock to read
	// Everything but the lock's keys: commands, channels, other keys.
	setUser(t, srv, "bob", "~other:*", "&*", "+@all")
	environ := env(nil, "RENEWLOCK_REDIS="+userURL(srv, "bob", secret))
	want := []string{"permission problem", `user "bob"`, "NOPERM", `"Least privilege"`, "bob:xxxxx@"}

	took := checkExit(t, environ, 77, want, "run", "-k", key, "--wait", "30s", "--", "true")
	if took > 5*time.Second {
		t.Fatalf("run --wait 30s took %v to report a permission problem", took)
	}
	checkExit(t, environ, 77, want, "run", "-k", key, "--", "true")
	checkExit(t, environ, 77, want, "run", "-k", key, "-n", "--", "true")
	checkExit(t, environ, 77, want, "status", key)
	checkExit(t, environ, 77, want, "list")
	checkExit(t, environ, 77, want, "release", "--force", key)
	if code, _, _ := runTool(t, env(srv), "status", key); code != 0 {
		t.Fatalf("the lock is gone after the denied release (status exit %d)", code)
	}
}

// 12. A wrong password is a permission problem (77), not an outage (69),
// for every subcommand; so is a missing one.
func TestWrongPassword(t *testing.T) {
	srv := redistest.Start(t)
	setUser(t, srv, "bob", "~*", "&*", "+@all")
	for _, tc := range []struct {
		name, url string
		want      []string
	}{
		{"wrong password", userURL(srv, "bob", secret+"x"), []string{"WRONGPASS", `user "bob"`, "user name and password"}},
		{"unknown user", userURL(srv, "carol", secret), []string{"WRONGPASS", `user "carol"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			environ := env(nil, "RENEWLOCK_REDIS="+tc.url)
			want := append([]string{"permission problem", `"Least privilege"`}, tc.want...)
			for _, args := range [][]string{
				{"run", "-k", "k", "--wait", "30s", "--", "true"},
				{"run", "-k", "k", "-n", "--", "true"},
				{"status", "k"},
				{"list"},
				{"release", "--force", "k"},
			} {
				checkExit(t, environ, 77, want, args...)
			}
		})
	}
	t.Run("no password", func(t *testing.T) {
		if err := srv.Client().Do(context.Background(), "CONFIG", "SET", "requirepass", secret).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			srv.Client(func(o *redis.Options) { o.Password = secret }).Do(context.Background(), "CONFIG", "SET", "requirepass", "")
		})
		checkExit(t, env(srv), 77, []string{"permission problem", "NOAUTH", `user "default"`}, "status", "k")
	})
}

// 13. A key that is not a lock where the lock should be: 78 (EX_CONFIG)
// naming the key, at once even for a blocking run.
func TestKeyNotALock(t *testing.T) {
	srv := redistest.Start(t)
	key := uniqueKey(t)
	if err := srv.Client().Set(context.Background(), "renewlock:"+key, "not a lock", 0).Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"WRONGTYPE", `"renewlock:` + key + `"`, "not a renewlock lock"}
	took := checkExit(t, env(srv), 78, want, "run", "-k", key, "--wait", "30s", "--", "true")
	if took > 5*time.Second {
		t.Fatalf("run --wait 30s took %v to report the key", took)
	}
	checkExit(t, env(srv), 78, want, "run", "-k", key, "-n", "--", "true")
	checkExit(t, env(srv), 78, want, "release", "--force", key)
}
