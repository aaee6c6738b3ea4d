package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTopology(t *testing.T) {
	for u, want := range map[string]Topology{
		"redis://h":                    TopologySingle,
		"unix:///s":                    TopologySingle,
		"redis-sentinel://h/m":         TopologySentinel,
		"REDISS-SENTINEL://h/m":        TopologySentinel,
		"redis-cluster://h":            TopologyCluster,
		" rediss-cluster://h:1,h:2 ":   TopologyCluster,
		"redis-sentinel-ish://h":       TopologySingle,
		"not a url at all":             TopologySingle,
		"redis-cluster:/missing-slash": TopologySingle,
	} {
		if got := (RedisTarget{URL: u}).Topology(); got != want {
			t.Errorf("Topology(%q) = %v, want %v", u, got, want)
		}
	}
}

func TestFailoverOptions(t *testing.T) {
	for _, tc := range []struct {
		url                  string
		sentinels            []string
		master               string
		db                   int
		user, pass           string
		sentinelUser, sentPw string
		tls                  bool
		dialTimeout          time.Duration
	}{
		{url: "redis-sentinel://h1:26379,h2:26380/mymaster", sentinels: []string{"h1:26379", "h2:26380"}, master: "mymaster"},
		{url: "redis-sentinel://alice:s%40cret@h1,h2,[::1]/mymaster/2?dial_timeout=2s", sentinels: []string{"h1:26379", "h2:26379", "[::1]:26379"},
			master: "mymaster", db: 2, user: "alice", pass: "s@cret", dialTimeout: 2 * time.Second},
		{url: "rediss-sentinel://:pw@h:5000/my%20master?db=3&sentinel_username=su&sentinel_password=sp", sentinels: []string{"h:5000"},
			master: "my master", db: 3, pass: "pw", sentinelUser: "su", sentPw: "sp", tls: true},
		{url: "redis-sentinel://[::1]:26379/m?addr=h9:1", sentinels: []string{"[::1]:26379", "h9:1"}, master: "m"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := RedisTarget{URL: tc.url, Source: "test"}.FailoverOptions()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(o.SentinelAddrs, ",") != strings.Join(tc.sentinels, ",") || o.MasterName != tc.master || o.DB != tc.db ||
				o.Username != tc.user || o.Password != tc.pass || o.SentinelUsername != tc.sentinelUser || o.SentinelPassword != tc.sentPw ||
				(o.TLSConfig != nil) != tc.tls || o.DialTimeout != tc.dialTimeout {
				t.Fatalf("options: sentinels %v master %q db %d user %q pass %q sentinel user %q pass %q tls %v dial %v",
					o.SentinelAddrs, o.MasterName, o.DB, o.Username, o.Password, o.SentinelUsername, o.SentinelPassword, o.TLSConfig != nil, o.DialTimeout)
			}
			if o.TLSConfig != nil && o.TLSConfig.ServerName != "" {
				t.Fatalf("TLS server name %q: want each host's own", o.TLSConfig.ServerName)
			}
		})
	}
}

func TestClusterOptions(t *testing.T) {
	for _, tc := range []struct {
		url         string
		addrs       []string
		user, pass  string
		tls         bool
		readTimeout time.Duration
	}{
		{url: "redis-cluster://h1:7000,h2:7001", addrs: []string{"h1:7000", "h2:7001"}},
		{url: "redis-cluster://h1", addrs: []string{"h1:6379"}},
		{url: "rediss-cluster://u:p@h1,h2:7/?read_timeout=1s", addrs: []string{"h1:6379", "h2:7"}, user: "u", pass: "p", tls: true, readTimeout: time.Second},
		{url: "redis-cluster://h1/0?addr=h3:3", addrs: []string{"h1:6379", "h3:3"}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := RedisTarget{URL: tc.url, Source: "test"}.ClusterOptions()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(o.Addrs, ",") != strings.Join(tc.addrs, ",") || o.Username != tc.user || o.Password != tc.pass ||
				(o.TLSConfig != nil) != tc.tls || o.ReadTimeout != tc.readTimeout {
				t.Fatalf("options: addrs %v user %q pass %q tls %v read %v", o.Addrs, o.Username, o.Password, o.TLSConfig != nil, o.ReadTimeout)
			}
		})
	}
}

// Bad Sentinel and Cluster URLs are usage errors that name the URL without
// its passwords and say what form is wanted.
func TestBadTopologyURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"redis-sentinel://bob:hunter2@h1,h2", "no master name"},
		{"redis-sentinel://bob:hunter2@h1/", "no master name"},
		{"redis-sentinel://bob:hunter2@h1/m/1/2", "bad path"},
		{"redis-sentinel://bob:hunter2@h1/m/x", "invalid database number"},
		{"redis-sentinel://bob:hunter2@h1/m?master_name=n", "?master_name"},
		{"redis-sentinel://bob:hunter2@h1/m?password=hunter2", "?password"},
		{"redis-sentinel://bob:hunter2@h1/m?sentinel_password=hunter2&bogus=1", "unexpected option: bogus"},
		{"redis-sentinel://bob:hunter2@h1:x/m", "bad port"},
		{"redis-sentinel://bob:hunter2@h1,,h2/m", "empty host"},
		{"redis-sentinel://bob:hunter2@h1/m#frag", "fragment"},
		{"redis-cluster://bob:hunter2@h1/1", "only database 0"},
		{"redis-cluster://bob:hunter2@h1:99999", "bad port"},
		{"redis-cluster://bob:hunter2@:7000", "no host name"},
		{"redis-cluster://bob:hunter2@h1?dial_timeout=soon", "dial_timeout"},
		{"redis-cluster://bob:hunter2@::1", "bad host"},
	} {
		tgt := RedisTarget{URL: tc.url, Source: "--redis"}
		var err error
		if tgt.Topology() == TopologySentinel {
			_, err = tgt.FailoverOptions()
		} else {
			_, err = tgt.ClusterOptions()
		}
		if err == nil {
			t.Errorf("%s: no error", tc.url)
			continue
		}
		if Code(err) != ExitUsage || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "bob:xxxxx@") ||
			!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "want redis-") {
			t.Errorf("%s: %v; want a usage error with %q, naming the URL without its password and the form wanted", tc.url, err, tc.want)
		}
	}
	if _, err := (RedisTarget{URL: "redis-cluster://h", Source: "--redis"}).Options(); Code(err) != ExitUsage || !strings.Contains(err.Error(), "Cluster URL") {
		t.Errorf("Options of a Cluster URL: %v", err)
	}
}

func TestRedactTopologyURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis-sentinel://u:p@h1,h2/m":                          "redis-sentinel://u:xxxxx@h1,h2/m",
		"redis-sentinel://h/m?sentinel_password=sp&db=1":        "redis-sentinel://h/m?sentinel_password=xxxxx&db=1",
		"rediss-sentinel://u:p@h/m?dial_timeout=1&password=pp":  "rediss-sentinel://u:xxxxx@h/m?dial_timeout=1&password=xxxxx",
		"redis-cluster://u:p@h1:7000,h2:7001?read_timeout=1s":   "redis-cluster://u:xxxxx@h1:7000,h2:7001?read_timeout=1s",
		"redis://h?SENTINEL_PASSWORD=a%26b":                     "redis://h?SENTINEL_PASSWORD=xxxxx",
		"redis-sentinel://h/m?sentinel_username=password=x&a=b": "redis-sentinel://h/m?sentinel_username=password=x&a=b",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	tgt := RedisTarget{URL: "redis-sentinel://h/m?sentinel_password=s%3Fcret", Source: "t"}
	for _, s := range []string{"s%3Fcret", "s?cret"} {
		if msg := redactMsg("dial: "+s, tgt); strings.Contains(msg, "cret") {
			t.Errorf("redactMsg kept the Sentinel password: %q", msg)
		}
	}
}

// The connection settings (flags, environment) override the URL: the user
// and password of the master (Sentinel) or of every node (Cluster), and
// TLS for every server, each checked against its own host name.
func TestConnOverridesTopologyURL(t *testing.T) {
	conn := ConnSettings{User: Setting{"carol", "--user"}, Pass: Setting{"pw2", "$RENEWLOCK_PASS"}, TLSInsecure: Setting{"true", "--tls-insecure"}}
	s, err := RedisTarget{URL: "redis-sentinel://u:p@h1,h2/m?sentinel_password=sp", Source: "t", Conn: conn}.FailoverOptions()
	if err != nil {
		t.Fatal(err)
	}
	if s.Username != "carol" || s.Password != "pw2" || s.SentinelPassword != "sp" || s.TLSConfig == nil || !s.TLSConfig.InsecureSkipVerify || s.TLSConfig.ServerName != "" {
		t.Fatalf("failover options: user %q pass %q sentinel pass %q tls %+v", s.Username, s.Password, s.SentinelPassword, s.TLSConfig)
	}
	conn.TLSSNI = Setting{"redis.internal", "--tls-sni"}
	c, err := RedisTarget{URL: "redis-cluster://u:p@h1,h2", Source: "t", Conn: conn}.ClusterOptions()
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "carol" || c.Password != "pw2" || c.TLSConfig == nil || c.TLSConfig.ServerName != "redis.internal" {
		t.Fatalf("cluster options: user %q pass %q tls %+v", c.Username, c.Password, c.TLSConfig)
	}
	tgt := RedisTarget{URL: "redis-cluster://dave:p@h1", Source: "t"}
	if u := tgt.user(); u != "dave" {
		t.Fatalf("user() = %q, want dave", u)
	}
	if tgt.tlsOn() || !(RedisTarget{URL: "rediss-cluster://h"}).tlsOn() {
		t.Fatal("tlsOn")
	}
	missing := ConnSettings{TLSCACert: Setting{"/nonexistent/ca.pem", "--tls-cacert"}}
	if _, err := (RedisTarget{URL: "redis-sentinel://h/m", Source: "t", Conn: missing}).FailoverOptions(); Code(err) != ExitUsage || !errors.Is(err, err) || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("missing CA file: %v", err)
	}
}

func TestNewClientPerTopology(t *testing.T) {
	for u, want := range map[string]string{
		"redis://127.0.0.1:1":               "*redis.Client",
		"redis-sentinel://127.0.0.1:1/m":    "*redis.Client",
		"redis-cluster://127.0.0.1:1,[::1]": "*redis.ClusterClient",
	} {
		rdb, err := RedisTarget{URL: u, Source: "t"}.NewClient()
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if got := typeName(rdb); got != want {
			t.Errorf("%s: %s, want %s", u, got, want)
		}
		_ = rdb.Close()
	}
	if _, err := (RedisTarget{URL: "redis-cluster://h/3", Source: "t"}).NewClient(); Code(err) != ExitUsage {
		t.Fatalf("NewClient of a bad URL: %v", err)
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
