package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Flags and environment variables for authentication and TLS, as
// redis-cli has them. Each setting is taken from its flag, else its
// environment variable, else the URL.
const (
	FlagUser        = "user"
	FlagPass        = "pass"
	FlagPassFile    = "pass-file"
	FlagTLSCACert   = "tls-cacert"
	FlagTLSCert     = "tls-cert"
	FlagTLSKey      = "tls-key"
	FlagTLSSNI      = "tls-sni"
	FlagTLSInsecure = "tls-insecure"

	EnvUser        = "RENEWLOCK_USER"
	EnvPass        = "RENEWLOCK_PASS"
	EnvTLSCACert   = "RENEWLOCK_TLS_CACERT"
	EnvTLSCert     = "RENEWLOCK_TLS_CERT"
	EnvTLSKey      = "RENEWLOCK_TLS_KEY"
	EnvTLSSNI      = "RENEWLOCK_TLS_SNI"
	EnvTLSInsecure = "RENEWLOCK_TLS_INSECURE"
)

// Setting is one resolved connection setting and where it came from
// ("--user", "$RENEWLOCK_USER", …). The zero Setting is unset.
type Setting struct {
	Value  string
	Source string
}

// IsSet reports whether the setting was given.
func (s Setting) IsSet() bool { return s.Source != "" }

// ConnSettings are the user, password and TLS settings given by flags or
// the environment; they override what the URL says.
type ConnSettings struct {
	User, Pass                         Setting
	TLSCACert, TLSCert, TLSKey, TLSSNI Setting
	TLSInsecure                        Setting // "true" or "false"
}

// tlsGiven reports whether any TLS setting was given, which turns TLS on.
func (c ConnSettings) tlsGiven() (Setting, bool) {
	for _, s := range []Setting{c.TLSCACert, c.TLSCert, c.TLSKey, c.TLSSNI, c.TLSInsecure} {
		if s.IsSet() {
			return s, true
		}
	}
	return Setting{}, false
}

// ConnFlags are the values of the connection flags as parsed; Changed
// reports whether a flag (by name) was given on the command line.
type ConnFlags struct {
	User, Pass, PassFile               string
	TLSCACert, TLSCert, TLSKey, TLSSNI string
	TLSInsecure                        bool
	Changed                            func(name string) bool
}

// ResolveConn picks each connection setting from its flag, else its
// environment variable (an empty variable counts as unset). What is left
// unset comes from the URL. The password file is read here; a file that
// cannot be read, --pass with --pass-file, or a bad $RENEWLOCK_TLS_INSECURE
// is a usage error. Messages never show the password.
func ResolveConn(f ConnFlags, getenv func(string) string) (ConnSettings, error) {
	changed := f.Changed
	if changed == nil {
		changed = func(string) bool { return false }
	}
	var c ConnSettings
	pick := func(flag, flagVal, env string) Setting {
		if changed(flag) {
			return Setting{Value: flagVal, Source: "--" + flag}
		}
		if v := getenv(env); v != "" {
			return Setting{Value: v, Source: "$" + env}
		}
		return Setting{}
	}
	c.User = pick(FlagUser, f.User, EnvUser)
	if changed(FlagUser) && f.User == "" {
		return c, Usagef("--%s: empty user name", FlagUser)
	}
	switch {
	case changed(FlagPass) && changed(FlagPassFile):
		return c, Usagef("--%s and --%s exclude each other", FlagPass, FlagPassFile)
	case changed(FlagPassFile):
		pw, err := readPassFile(f.PassFile)
		if err != nil {
			return c, err
		}
		c.Pass = Setting{Value: pw, Source: "--" + FlagPassFile + " " + f.PassFile}
	default:
		c.Pass = pick(FlagPass, f.Pass, EnvPass)
	}
	c.TLSCACert = pick(FlagTLSCACert, f.TLSCACert, EnvTLSCACert)
	c.TLSCert = pick(FlagTLSCert, f.TLSCert, EnvTLSCert)
	c.TLSKey = pick(FlagTLSKey, f.TLSKey, EnvTLSKey)
	c.TLSSNI = pick(FlagTLSSNI, f.TLSSNI, EnvTLSSNI)
	for _, s := range []Setting{c.TLSCACert, c.TLSCert, c.TLSKey, c.TLSSNI} {
		if s.IsSet() && strings.TrimSpace(s.Value) == "" {
			return c, Usagef("%s: empty value", s.Source)
		}
	}
	if changed(FlagTLSInsecure) {
		c.TLSInsecure = Setting{Value: strconv.FormatBool(f.TLSInsecure), Source: "--" + FlagTLSInsecure}
	} else if v := getenv(EnvTLSInsecure); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, Usagef("$%s=%s: want true or false (1 or 0)", EnvTLSInsecure, strquote(v))
		}
		c.TLSInsecure = Setting{Value: strconv.FormatBool(b), Source: "$" + EnvTLSInsecure}
	}
	return c, nil
}

// readPassFile reads a password from the first line of path (a trailing
// newline is not part of it).
func readPassFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", Usagef("--%s %s: cannot read the password: %v", FlagPassFile, path, pathErr(err))
	}
	pw := string(b)
	if i := strings.IndexAny(pw, "\r\n"); i >= 0 {
		pw = pw[:i]
	}
	if pw == "" {
		return "", Usagef("--%s %s: the file's first line is empty; want the password", FlagPassFile, path)
	}
	return pw, nil
}

// pathErr drops the path os errors repeat, which the message names already.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// applyConn puts the settings that override the URL into opts: the user,
// the password and TLS. A rediss:// URL or any TLS setting turns TLS on.
// Certificate files are loaded here, so that a missing or bad file is a
// usage error naming it before anything connects.
func (t RedisTarget) applyConn(opts *redis.Options) error {
	if opts.Network == "unix" {
		if given, tlsGiven := t.Conn.tlsGiven(); opts.TLSConfig != nil || tlsGiven {
			what := "a rediss:// URL"
			if tlsGiven {
				what = given.Source
			}
			return Usagef("%s asks for TLS, but Redis at %s is a Unix socket, which Redis serves without TLS; use a rediss://host:port URL", what, t.Redacted())
		}
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		host = opts.Addr
	}
	return t.applyConnTo(connFields{user: &opts.Username, pass: &opts.Password, tls: &opts.TLSConfig, host: host})
}

// connFields are where a client's options keep what the connection
// settings override: for a Sentinel, the master's user and password (the
// Sentinels' own come from the URL only); TLS applies to every server.
type connFields struct {
	user, pass *string
	tls        **tls.Config
	// host is the server name checked in TLS by default; "" for several
	// servers, so that each is checked against its own host name.
	host string
}

// applyConnTo puts the settings that override the URL into f.
func (t RedisTarget) applyConnTo(f connFields) error {
	c := t.Conn
	if c.User.IsSet() {
		*f.user = c.User.Value
	}
	if c.Pass.IsSet() {
		*f.pass = c.Pass.Value
	}
	_, tlsGiven := c.tlsGiven()
	if *f.tls == nil && !tlsGiven {
		return nil
	}
	cfg := *f.tls
	if cfg == nil {
		cfg = &tls.Config{ServerName: f.host}
	}
	cfg.MinVersion = tls.VersionTLS12
	if c.TLSCACert.IsSet() {
		pool, err := loadCAFile(c.TLSCACert)
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.TLSCert.IsSet() && !c.TLSKey.IsSet():
		return Usagef("%s %s needs the client certificate's private key too: give --%s (or $%s)", c.TLSCert.Source, c.TLSCert.Value, FlagTLSKey, EnvTLSKey)
	case c.TLSKey.IsSet() && !c.TLSCert.IsSet():
		return Usagef("%s %s needs the client certificate too: give --%s (or $%s)", c.TLSKey.Source, c.TLSKey.Value, FlagTLSCert, EnvTLSCert)
	case c.TLSCert.IsSet():
		cert, err := loadKeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if c.TLSSNI.IsSet() {
		cfg.ServerName = c.TLSSNI.Value
	}
	if c.TLSInsecure.IsSet() {
		cfg.InsecureSkipVerify = c.TLSInsecure.Value == "true"
	}
	*f.tls = cfg
	return nil
}

// loadCAFile reads the PEM certificates of the CA that signed the server's
// certificate.
func loadCAFile(s Setting) (*x509.CertPool, error) {
	b, err := os.ReadFile(s.Value)
	if err != nil {
		return nil, Usagef("%s %s: cannot read the CA certificate: %v", s.Source, s.Value, pathErr(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, Usagef("%s %s: no PEM certificate in the file; want the CA certificate that signed the server's certificate (-----BEGIN CERTIFICATE-----)", s.Source, s.Value)
	}
	return pool, nil
}

// loadKeyPair reads the client certificate and its key, and checks that
// they belong together.
func loadKeyPair(certS, keyS Setting) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certS.Value)
	if err != nil {
		return tls.Certificate{}, Usagef("%s %s: cannot read the client certificate: %v", certS.Source, certS.Value, pathErr(err))
	}
	keyPEM, err := os.ReadFile(keyS.Value)
	if err != nil {
		return tls.Certificate{}, Usagef("%s %s: cannot read the client key: %v", keyS.Source, keyS.Value, pathErr(err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		return cert, nil
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, "does not match"):
		return tls.Certificate{}, Usagef("%s %s and %s %s: the private key does not match the certificate (%v)", keyS.Source, keyS.Value, certS.Source, certS.Value, err)
	case strings.Contains(msg, "certificate input"), strings.HasPrefix(msg, "x509:"):
		return tls.Certificate{}, Usagef("%s %s: not a usable PEM client certificate (%v)", certS.Source, certS.Value, err)
	}
	return tls.Certificate{}, Usagef("%s %s: not a usable private key for the certificate %s (%v)", keyS.Source, keyS.Value, certS.Value, err)
}

// Environ returns the environment that makes another renewlock process
// connect as this target does (the demo's workers), so that no password
// appears on a command line.
func (t RedisTarget) Environ() []string {
	env := []string{EnvRedis + "=" + t.URL, EnvRedisURL + "="}
	c := t.Conn
	for _, kv := range []struct {
		name string
		s    Setting
	}{
		{EnvUser, c.User}, {EnvPass, c.Pass}, {EnvTLSCACert, c.TLSCACert}, {EnvTLSCert, c.TLSCert},
		{EnvTLSKey, c.TLSKey}, {EnvTLSSNI, c.TLSSNI}, {EnvTLSInsecure, c.TLSInsecure},
	} {
		env = append(env, kv.name+"="+kv.s.Value) // an empty value counts as unset
	}
	return env
}

// user returns the Redis user the target logs in as.
func (t RedisTarget) user() string {
	if t.Conn.User.IsSet() {
		return t.Conn.User.Value
	}
	name := ""
	switch t.Topology() {
	case TopologySingle:
		if o, err := redis.ParseURL(t.URL); err == nil {
			name = o.Username
		}
	default:
		if p, err := splitTopoURL(t.URL, DefaultRedisPort); err == nil {
			name, _, _ = p.user()
		}
	}
	if name == "" {
		return "default"
	}
	return name
}

// urlTLS reports whether the URL's scheme asks for TLS.
func urlTLS(u string) bool {
	scheme, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(u)), "://")
	return scheme == "rediss" || scheme == SchemeSentinelTLS || scheme == SchemeClusterTLS
}

// tlsOn reports whether the target connects with TLS.
func (t RedisTarget) tlsOn() bool {
	if _, ok := t.Conn.tlsGiven(); ok {
		return true
	}
	return urlTLS(t.URL)
}

// secrets returns the passwords to hide in messages.
func (t RedisTarget) secrets() []string {
	var out []string
	if pw := urlPassword(t.URL); pw != "" {
		out = append(out, pw)
		if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
			out = append(out, dec)
		}
	}
	out = append(out, queryPasswords(t.URL)...)
	if t.Conn.Pass.Value != "" {
		out = append(out, t.Conn.Pass.Value)
	}
	return out
}

// describe names the target in messages: the URL without its password,
// where it came from, and the settings that override it.
func (t RedisTarget) describe() string {
	s := fmt.Sprintf("Redis at %s (from %s", t.Redacted(), t.Source)
	if t.Conn.User.IsSet() {
		s += fmt.Sprintf(", user from %s", t.Conn.User.Source)
	}
	if t.tlsOn() && !urlTLS(t.URL) {
		s += ", TLS"
	}
	return s + ")"
}
