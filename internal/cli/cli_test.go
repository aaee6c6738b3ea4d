package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestResolveRedis(t *testing.T) {
	envOf := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	for _, tc := range []struct {
		name       string
		flag       string
		flagSet    bool
		env        map[string]string
		url, from  string
		wantErrMsg string
	}{
		{"default", "", false, nil, DefaultRedisURL, "default", ""},
		{"REDIS_URL", "", false, map[string]string{EnvRedisURL: "redis://a"}, "redis://a", "$REDIS_URL", ""},
		{"RENEWLOCK_REDIS first", "", false, map[string]string{EnvRedisURL: "redis://a", EnvRedis: "redis://b"}, "redis://b", "$RENEWLOCK_REDIS", ""},
		{"empty env is unset", "", false, map[string]string{EnvRedis: "", EnvRedisURL: "redis://a"}, "redis://a", "$REDIS_URL", ""},
		{"flag first", "redis://c", true, map[string]string{EnvRedisURL: "redis://a", EnvRedis: "redis://b"}, "redis://c", "--redis", ""},
		{"empty flag", " ", true, nil, "", "", "--redis: empty URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveRedis(tc.flag, tc.flagSet, envOf(tc.env))
			if tc.wantErrMsg != "" {
				if Code(err) != ExitUsage || !strings.Contains(err.Error(), tc.wantErrMsg) {
					t.Fatalf("err = %v, want a usage error with %q", err, tc.wantErrMsg)
				}
				return
			}
			if err != nil || got.URL != tc.url || got.Source != tc.from {
				t.Fatalf("ResolveRedis = %+v, %v; want %s from %s", got, err, tc.url, tc.from)
			}
		})
	}
}

func TestRedisOptions(t *testing.T) {
	for _, tc := range []struct {
		url            string
		network, addr  string
		user, password string
		db             int
		tls            bool
	}{
		{"redis://127.0.0.1:6379", "tcp", "127.0.0.1:6379", "", "", 0, false},
		{"redis://h", "tcp", "h:6379", "", "", 0, false},
		{"redis://:pw@h:1/3", "tcp", "h:1", "", "pw", 3, false},
		{"redis://alice:s%40cret@h:2/15", "tcp", "h:2", "alice", "s@cret", 15, false},
		{"rediss://alice:pw@h:6380", "tcp", "h:6380", "alice", "pw", 0, true},
		{"redis://[::1]:7000/1", "tcp", "[::1]:7000", "", "", 1, false},
		{"unix:///run/redis.sock", "unix", "/run/redis.sock", "", "", 0, false},
		{"unix://bob:pw@/run/redis.sock?db=2", "unix", "/run/redis.sock", "bob", "pw", 2, false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := RedisTarget{URL: tc.url, Source: "test"}.Options()
			if err != nil {
				t.Fatal(err)
			}
			if o.Network != tc.network || o.Addr != tc.addr || o.Username != tc.user || o.Password != tc.password || o.DB != tc.db || (o.TLSConfig != nil) != tc.tls {
				t.Fatalf("options = network %q addr %q user %q password %q db %d tls %v", o.Network, o.Addr, o.Username, o.Password, o.DB, o.TLSConfig != nil)
			}
		})
	}
}

func TestBadRedisURLHidesPassword(t *testing.T) {
	for _, u := range []string{
		"redis://bob:hunter2@host:notaport",
		"redis://bob:hunter2@host/notadb",
		"redis://bob:hunter2@host/1/2",
		"ftp://bob:hunter2@host",
		"redis://bob:hunter2@ho st",
		"redis://bob:hunter2@host/?db=x",
		"redis://bob:hunter2@host:1?max_retries=many",
		"redis://bob:hunter2@[::1",
		"redis://bob:hunter2@%zz",
	} {
		_, err := RedisTarget{URL: u, Source: "--redis"}.Options()
		if err == nil {
			t.Errorf("%s: no error", u)
			continue
		}
		if Code(err) != ExitUsage || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "bob:xxxxx@") {
			t.Errorf("%s: %v; want a usage error naming the URL without its password", u, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://h:1":                 "redis://h:1",
		"redis://u:p@h:1/2":           "redis://u:xxxxx@h:1/2",
		"redis://:p@h":                "redis://:xxxxx@h",
		"redis://u@h":                 "redis://u@h",
		"redis://u:p@ss@h/x@y":        "redis://u:xxxxx@h/x@y",
		"unix://u:p@/tmp/r.sock?db=1": "unix://u:xxxxx@/tmp/r.sock?db=1",
		"not a url":                   "not a url",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"10s": 10 * time.Second, "500ms": 500 * time.Millisecond, "1m30s": 90 * time.Second,
		"10": 10 * time.Second, "2.5": 2500 * time.Millisecond, "0": 0, " 3 ": 3 * time.Second,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-1s", "soon", "1e400", "NaN", "Inf", "10 s", "1..2", "99999999999999999999"} {
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, d)
		} else if in != "" && !strings.Contains(err.Error(), in) {
			t.Errorf("ParseDuration(%q): error %q does not name the value", in, err)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := func() *RunConfig {
		return &RunConfig{Key: "k", TTL: time.Second, Command: []string{"true"}}
	}
	if err := ok().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*RunConfig)
		want string
	}{
		{"no key", func(c *RunConfig) { c.Key = "" }, "--key"},
		{"no command", func(c *RunConfig) { c.Command = nil }, "no command"},
		{"ttl too small", func(c *RunConfig) { c.TTL = 99 * time.Millisecond }, "--ttl 99ms"},
		{"ttl too big", func(c *RunConfig) { c.TTL = 25 * time.Hour }, "--ttl 25h0m0s"},
		{"grace too long", func(c *RunConfig) { c.Grace = Duration{D: 600 * time.Millisecond, Given: true} }, "--grace 600ms"},
		{"short ttl, default grace", func(c *RunConfig) { c.TTL = 150 * time.Millisecond }, "--ttl 150ms"},
		{"no-wait with wait", func(c *RunConfig) { c.NoWait, c.Wait = true, Duration{D: time.Second, Given: true} }, "--no-wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(c)
			err := c.Validate()
			if Code(err) != ExitUsage || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want a usage error with %q", err, tc.want)
			}
		})
	}
	// The shortest TTL that fits the default grace and the kill slack.
	c := ok()
	c.TTL = 200 * time.Millisecond
	if err := c.Validate(); err != nil {
		t.Fatalf("ttl 200ms: %v", err)
	}
}

func TestDefaultGrace(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		time.Second: 100 * time.Millisecond, 10 * time.Second: time.Second, time.Minute: 5 * time.Second, time.Hour: 5 * time.Second,
	} {
		if got := DefaultGrace(ttl); got != want {
			t.Errorf("DefaultGrace(%v) = %v, want %v", ttl, got, want)
		}
	}
}

func TestSplitHolder(t *testing.T) {
	for in, want := range map[string]struct {
		host string
		pid  int
		ok   bool
	}{
		"web-1:4242":   {"web-1", 4242, true},
		"a:b:c:7":      {"a:b:c", 7, true},
		"worker (pid)": {"", 0, false},
		":12":          {"", 0, false},
		"h:-3":         {"", 0, false},
		"h:+3":         {"", 0, false},
		"h:":           {"", 0, false},
	} {
		host, pid, ok := SplitHolder(in)
		if host != want.host || pid != want.pid || ok != want.ok {
			t.Errorf("SplitHolder(%q) = %q, %d, %v; want %+v", in, host, pid, ok, want)
		}
	}
}

func TestCode(t *testing.T) {
	if Code(nil) != 0 || Code(errors.New("unknown flag: --x")) != ExitUsage || Code(exitf(ExitLeaseLost, "x")) != ExitLeaseLost {
		t.Fatal("Code mapping broken")
	}
}

// FuzzRedisTarget checks that no URL makes the resolution or parsing panic,
// and that an error never shows the password.
func FuzzRedisTarget(f *testing.F) {
	for _, s := range []string{"redis://h:1/2", "rediss://u:p@h", "unix:///s?db=1", "redis://u:p@h:x", "%", "redis://[::1", "://@:",
		"redis-sentinel://u:p@h1,h2:26380/m/1?sentinel_password=x", "rediss-cluster://h1,[::1]:7000?read_timeout=1s", "redis-cluster://,/"} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, rest, env string) {
		tgt, err := ResolveRedis("", false, func(k string) string {
			if k == EnvRedis {
				return env
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = tgt.Options()
		_ = tgt.Validate()
		_ = RedactURL(env)

		const secret = "Zq9SECRETpw"
		u := "redis://user:" + secret + "@" + rest
		if strings.Contains(rest, secret) || strings.ContainsAny(rest, "@") {
			return // the "password" would not be the password
		}
		if r := RedactURL(u); strings.Contains(r, secret) {
			t.Fatalf("RedactURL(%q) = %q", u, r)
		}
		if _, err := (RedisTarget{URL: u, Source: "--redis"}).Options(); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the password: %v", err)
		}
		for _, scheme := range []string{"redis-sentinel", "redis-cluster"} {
			u := scheme + "://user:" + secret + "@" + rest
			if r := RedactURL(u); strings.Contains(r, secret) {
				t.Fatalf("RedactURL(%q) = %q", u, r)
			}
			if err := (RedisTarget{URL: u, Source: "--redis"}).Validate(); err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("error shows the password: %v", err)
			}
		}
	})
}

// FuzzParseDuration checks that no flag value panics, and that an accepted
// duration is non-negative and survives a round trip through String.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"10s", "1.5", "-1", "1e9", "9223372036.854775807", "1h2m3s4ms5us6ns", "+0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v < 0", s, d)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v; its String %q parses to %v, %v", s, d, d.String(), back, err)
		}
	})
}
