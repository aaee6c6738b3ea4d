package cli

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is used when neither --redis nor the environment names a
// Redis server.
const DefaultRedisURL = "redis://127.0.0.1:6379"

// Environment variables read for the Redis URL, in order of precedence
// (after the --redis flag).
const (
	EnvRedis    = "RENEWLOCK_REDIS"
	EnvRedisURL = "REDIS_URL"
)

// RedisTarget is a resolved Redis URL and where it came from.
type RedisTarget struct {
	URL    string // as given; may hold a password: print Redacted instead
	Source string // "--redis", "$RENEWLOCK_REDIS", "$REDIS_URL" or "default"
	// Conn holds the user, password and TLS settings given by flags or
	// the environment, which override the URL's.
	Conn ConnSettings
}

// Redacted returns the URL with any password replaced by "xxxxx".
func (t RedisTarget) Redacted() string { return RedactURL(t.URL) }

// ResolveRedis picks the Redis URL: the --redis flag if it was set, else
// $RENEWLOCK_REDIS, else $REDIS_URL, else DefaultRedisURL. An empty
// environment variable counts as unset; an empty flag is a usage error.
func ResolveRedis(flag string, flagSet bool, getenv func(string) string) (RedisTarget, error) {
	switch {
	case flagSet:
		if strings.TrimSpace(flag) == "" {
			return RedisTarget{}, Usagef("--redis: empty URL; use e.g. redis://host:6379")
		}
		return RedisTarget{URL: flag, Source: "--redis"}, nil
	case getenv(EnvRedis) != "":
		return RedisTarget{URL: getenv(EnvRedis), Source: "$" + EnvRedis}, nil
	case getenv(EnvRedisURL) != "":
		return RedisTarget{URL: getenv(EnvRedisURL), Source: "$" + EnvRedisURL}, nil
	}
	return RedisTarget{URL: DefaultRedisURL, Source: "default"}, nil
}

// Options parses the URL into go-redis options. It accepts redis://,
// rediss:// (TLS), unix:// and the forms go-redis supports: user and
// password (ACL), a database number as the path (or ?db=N), and query
// options such as dial_timeout. The settings in t.Conn override the URL's
// (see applyConn). A bad URL, or a certificate file that cannot be used, is
// a usage error that names the URL (with its password hidden) or the file.
func (t RedisTarget) Options() (*redis.Options, error) {
	if tp := t.Topology(); tp != TopologySingle {
		return nil, Usagef("Redis URL %s (from %s) is a %s URL, not a single server's", quoteURL(t.Redacted()), t.Source, tp)
	}
	opts, err := redis.ParseURL(t.URL)
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only
		// its cause, and hide the password anywhere else it may appear.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg := err.Error()
		if pw := urlPassword(t.URL); pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return nil, Usagef("bad Redis URL %s (from %s): %s; want redis://[user:password@]host[:port][/db], rediss://…, unix://[user:password@]/path/to/socket, redis-sentinel://… or redis-cluster://…",
			quoteURL(t.Redacted()), t.Source, msg)
	}
	if err := t.applyConn(opts); err != nil {
		return nil, err
	}
	return opts, nil
}

// quoteURL quotes u for a message only when it needs it (spaces, control
// characters), so plain URLs stay copy-pasteable.
func quoteURL(u string) string {
	for _, r := range u {
		if r <= ' ' || r == 0x7f || r == '"' {
			return strquote(u)
		}
	}
	return u
}

// RedactURL returns u with the password of its user info replaced by
// "xxxxx". It works on strings url.Parse rejects too, so that error
// messages never show a password.
func RedactURL(u string) string {
	if start, end, ok := passwordSpan(u); ok {
		u = u[:start] + "xxxxx" + u[end:]
	}
	return queryPasswordParam.ReplaceAllString(u, "${1}xxxxx")
}

// urlPassword returns the password part of u's user info, as written.
func urlPassword(u string) string {
	start, end, ok := passwordSpan(u)
	if !ok {
		return ""
	}
	return u[start:end]
}

// passwordSpan finds the password in scheme://user:password@host/…, by the
// same rule as net/url: the authority ends at the first '/', '?' or '#',
// and the user info at the last '@' in it.
func passwordSpan(u string) (start, end int, ok bool) {
	i := strings.Index(u, "://")
	if i < 0 {
		return 0, 0, false
	}
	auth := u[i+3:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return 0, 0, false
	}
	colon := strings.Index(auth[:at], ":")
	if colon < 0 || colon+1 == at {
		return 0, 0, false
	}
	return i + 3 + colon + 1, i + 3 + at, true
}

// Topology is what a Redis URL points at.
type Topology int

const (
	// TopologySingle is one server: redis://, rediss:// or unix://.
	TopologySingle Topology = iota
	// TopologySentinel is a primary found through Sentinels:
	// redis-sentinel:// or rediss-sentinel://.
	TopologySentinel
	// TopologyCluster is a Redis Cluster: redis-cluster:// or
	// rediss-cluster://.
	TopologyCluster
)

// URL schemes of the topologies, and the default ports of their hosts.
const (
	SchemeSentinel      = "redis-sentinel"
	SchemeSentinelTLS   = "rediss-sentinel"
	SchemeCluster       = "redis-cluster"
	SchemeClusterTLS    = "rediss-cluster"
	DefaultSentinelPort = "26379"
	DefaultRedisPort    = "6379"
)

// Topology returns what the URL points at, by its scheme.
func (t RedisTarget) Topology() Topology {
	scheme, _, _ := strings.Cut(strings.TrimSpace(t.URL), "://")
	switch strings.ToLower(scheme) {
	case SchemeSentinel, SchemeSentinelTLS:
		return TopologySentinel
	case SchemeCluster, SchemeClusterTLS:
		return TopologyCluster
	}
	return TopologySingle
}

func (tp Topology) String() string {
	switch tp {
	case TopologySentinel:
		return "Sentinel"
	case TopologyCluster:
		return "Cluster"
	}
	return "single server"
}

// Validate parses the URL of any topology and loads the certificate files
// the settings name, so that a bad URL or file is a usage error before
// anything connects.
func (t RedisTarget) Validate() error {
	var err error
	switch t.Topology() {
	case TopologySentinel:
		_, err = t.FailoverOptions()
	case TopologyCluster:
		_, err = t.ClusterOptions()
	default:
		_, err = t.Options()
	}
	return err
}

// NewClient returns a go-redis client for the target: a Client for one
// server, a failover Client that finds the primary through the Sentinels
// (and follows it across failovers), or a ClusterClient. Context deadlines
// bound every network call. Nothing connects yet.
func (t RedisTarget) NewClient() (redis.UniversalClient, error) {
	switch t.Topology() {
	case TopologySentinel:
		o, err := t.FailoverOptions()
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(o), nil
	case TopologyCluster:
		o, err := t.ClusterOptions()
		if err != nil {
			return nil, err
		}
		o.ContextTimeoutEnabled = true
		return redis.NewClusterClient(o), nil
	}
	o, err := t.Options()
	if err != nil {
		return nil, err
	}
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), nil
}

// topoURL is a Sentinel or Cluster URL split into its parts:
// scheme://[userinfo@]host[:port][,host[:port]…][/path][?query].
type topoURL struct {
	tls      bool
	userinfo string   // as written, before the last '@' of the hosts part
	hosts    []string // host:port, the default port filled in
	path     string   // from the first '/' after the hosts, without it
	query    url.Values
}

// splitTopoURL parses u, whose hosts default to port defPort.
func splitTopoURL(u, defPort string) (topoURL, error) {
	var p topoURL
	scheme, rest, _ := strings.Cut(strings.TrimSpace(u), "://")
	p.tls = strings.HasPrefix(strings.ToLower(scheme), "rediss")
	if i := strings.Index(rest, "#"); i >= 0 {
		return p, errors.New("a URL fragment (#…) means nothing here")
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	hostPart, path, _ := strings.Cut(rest, "/")
	p.path = path
	if at := strings.LastIndex(hostPart, "@"); at >= 0 {
		p.userinfo, hostPart = hostPart[:at], hostPart[at+1:]
	}
	for _, h := range strings.Split(hostPart, ",") {
		if h == "" {
			return p, errors.New("empty host in the list (want host[:port],host[:port]…)")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port: the default one (an IPv6 address in brackets too).
			host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defPort
			if strings.ContainsAny(host, "[]/") || (strings.Contains(host, ":") && !strings.HasPrefix(h, "[")) {
				return p, fmt.Errorf("bad host %q (want host:port; an IPv6 address in brackets: [::1]:%s)", h, defPort)
			}
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return p, fmt.Errorf("bad port %q in %q", port, h)
		}
		if host == "" {
			return p, fmt.Errorf("no host name in %q", h)
		}
		p.hosts = append(p.hosts, net.JoinHostPort(host, port))
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, fmt.Errorf("bad query: %v", err)
	}
	p.query = q
	return p, nil
}

// user returns the user name and password of the userinfo, percent-decoded.
func (p topoURL) user() (name, password string, err error) {
	if p.userinfo == "" {
		return "", "", nil
	}
	u, err := url.Parse("redis://" + p.userinfo + "@h")
	if err != nil || u.User == nil {
		return "", "", errors.New("bad user or password (percent-encode @, : and / in them)")
	}
	pw, _ := u.User.Password()
	return u.User.Username(), pw, nil
}

// goRedisURL returns the URL in go-redis's own form for ParseClusterURL and
// ParseFailoverURL: the first host, the others as addr parameters, the
// rest of the query as is.
func (p topoURL) goRedisURL(userinfo, path string, q url.Values) string {
	scheme := "redis"
	if p.tls {
		scheme = "rediss"
	}
	q = maps.Clone(q)
	for _, h := range p.hosts[1:] {
		q.Add("addr", h)
	}
	s := scheme + "://"
	if userinfo != "" {
		s += userinfo + "@"
	}
	s += p.hosts[0] + path
	if enc := q.Encode(); enc != "" {
		s += "?" + enc
	}
	return s
}

// topologyUsage is the URL form a Sentinel or Cluster URL must have.
func topologyUsage(tp Topology) string {
	if tp == TopologySentinel {
		return "want redis-sentinel://[user:password@]host[:port][,host[:port]…]/MASTER[/db][?options] (port 26379 by default; rediss-sentinel:// for TLS)"
	}
	return "want redis-cluster://[user:password@]host[:port][,host[:port]…][?options] (port 6379 by default; rediss-cluster:// for TLS)"
}

// badTopologyURL is the usage error for a Sentinel or Cluster URL that does
// not parse; the message hides the password.
func (t RedisTarget) badTopologyURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := redactMsg(err.Error(), t)
	return Usagef("bad Redis URL %s (from %s): %s; %s", quoteURL(t.Redacted()), t.Source, msg, topologyUsage(t.Topology()))
}

// FailoverOptions parses a redis-sentinel:// URL into go-redis options.
// The hosts are the Sentinels; the path names the master, then optionally
// the database (also ?db=N). The user and password before '@' (and
// --user, --pass) log into the master and replicas; the Sentinels' own,
// if they have any, go in ?sentinel_username=…&sentinel_password=….
// Other query parameters are go-redis's (ParseFailoverURL): dial_timeout,
// read_timeout, max_retries, skip_verify, …
func (t RedisTarget) FailoverOptions() (*redis.FailoverOptions, error) {
	p, err := splitTopoURL(t.URL, DefaultSentinelPort)
	if err != nil {
		return nil, t.badTopologyURL(err)
	}
	master, db, _ := strings.Cut(p.path, "/")
	if master == "" {
		return nil, t.badTopologyURL(errors.New("no master name: the path names the master the Sentinels monitor"))
	}
	if strings.Contains(db, "/") {
		return nil, t.badTopologyURL(fmt.Errorf("bad path %q: want /MASTER or /MASTER/DB", "/"+p.path))
	}
	if master, err = url.PathUnescape(master); err != nil {
		return nil, t.badTopologyURL(err)
	}
	q := maps.Clone(p.query)
	for _, k := range []string{"master_name", "username", "password"} {
		if q.Has(k) {
			return nil, t.badTopologyURL(fmt.Errorf("?%s: give the master's name as the path and the user and password before '@'", k))
		}
	}
	sentinelUser, sentinelPass := q.Get("sentinel_username"), q.Get("sentinel_password")
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	q.Set("master_name", master)
	path := ""
	if db != "" {
		path = "/" + db
	}
	o, err := redis.ParseFailoverURL(p.goRedisURL("", path, q))
	if err != nil {
		return nil, t.badTopologyURL(err)
	}
	if o.Username, o.Password, err = p.user(); err != nil {
		return nil, t.badTopologyURL(err)
	}
	o.SentinelUsername, o.SentinelPassword = sentinelUser, sentinelPass
	if o.TLSConfig != nil {
		o.TLSConfig.ServerName = "" // each host's own name
	}
	if err := t.applyConnTo(connFields{user: &o.Username, pass: &o.Password, tls: &o.TLSConfig}); err != nil {
		return nil, err
	}
	return o, nil
}

// ClusterOptions parses a redis-cluster:// URL into go-redis options. The
// hosts are seed nodes (any of the cluster's nodes; the client learns the
// others); the user and password before '@' (and --user, --pass) log into
// every node. A Cluster has only database 0, so there is no path. Query
// parameters are go-redis's (ParseClusterURL): dial_timeout,
// read_timeout, max_redirects, …
func (t RedisTarget) ClusterOptions() (*redis.ClusterOptions, error) {
	p, err := splitTopoURL(t.URL, DefaultRedisPort)
	if err != nil {
		return nil, t.badTopologyURL(err)
	}
	if p.path != "" && p.path != "0" {
		return nil, t.badTopologyURL(fmt.Errorf("path %q: a Cluster has only database 0", "/"+p.path))
	}
	o, err := redis.ParseClusterURL(p.goRedisURL(p.userinfo, "", p.query))
	if err != nil {
		return nil, t.badTopologyURL(err)
	}
	if o.TLSConfig != nil {
		o.TLSConfig.ServerName = "" // each node's own name
	}
	if err := t.applyConnTo(connFields{user: &o.Username, pass: &o.Password, tls: &o.TLSConfig}); err != nil {
		return nil, err
	}
	return o, nil
}

// queryPasswordParam matches the password parameters a URL's query may
// carry, for redaction.
var queryPasswordParam = regexp.MustCompile(`(?i)([?&](?:sentinel_)?password=)([^&#]*)`)

// queryPasswords returns the values of the URL's password parameters, as
// written and decoded.
func queryPasswords(u string) []string {
	var out []string
	for _, m := range queryPasswordParam.FindAllStringSubmatch(u, -1) {
		if m[2] == "" {
			continue
		}
		out = append(out, m[2])
		if dec, err := url.QueryUnescape(m[2]); err == nil && dec != m[2] {
			out = append(out, dec)
		}
	}
	return out
}
