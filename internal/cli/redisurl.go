package cli

import (
	"errors"
	"net/url"
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
		return nil, Usagef("bad Redis URL %s (from %s): %s; want redis://[user:password@]host[:port][/db], rediss://… or unix://[user:password@]/path/to/socket",
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
	start, end, ok := passwordSpan(u)
	if !ok {
		return u
	}
	return u[:start] + "xxxxx" + u[end:]
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
