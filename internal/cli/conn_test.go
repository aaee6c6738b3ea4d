package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveConnPrecedence(t *testing.T) {
	env := map[string]string{EnvUser: "envuser", EnvPass: "envpass", EnvTLSCACert: "/env/ca", EnvTLSSNI: "env.example", EnvTLSInsecure: "1"}
	getenv := func(k string) string { return env[k] }

	// Environment only.
	c, err := ResolveConn(ConnFlags{}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != (Setting{"envuser", "$RENEWLOCK_USER"}) || c.Pass != (Setting{"envpass", "$RENEWLOCK_PASS"}) ||
		c.TLSCACert.Source != "$RENEWLOCK_TLS_CACERT" || c.TLSInsecure != (Setting{"true", "$RENEWLOCK_TLS_INSECURE"}) || c.TLSCert.IsSet() {
		t.Fatalf("from the environment: %+v", c)
	}

	// Flags first, also a flag set to its zero value.
	given := map[string]bool{FlagUser: true, FlagPass: true, FlagTLSCACert: true, FlagTLSInsecure: true}
	c, err = ResolveConn(ConnFlags{User: "flaguser", Pass: "flagpass", TLSCACert: "/flag/ca", Changed: func(n string) bool { return given[n] }}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.User.Value != "flaguser" || c.Pass != (Setting{"flagpass", "--pass"}) || c.TLSCACert != (Setting{"/flag/ca", "--tls-cacert"}) ||
		c.TLSInsecure != (Setting{"false", "--tls-insecure"}) || c.TLSSNI.Source != "$RENEWLOCK_TLS_SNI" {
		t.Fatalf("flags before the environment: %+v", c)
	}

	// Nothing given: nothing set, so the URL decides.
	c, err = ResolveConn(ConnFlags{}, func(string) string { return "" })
	if err != nil || c != (ConnSettings{}) {
		t.Fatalf("nothing given: %+v, %v", c, err)
	}
}

func TestResolveConnPassFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("hunter2\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := ConnFlags{PassFile: file, Changed: func(n string) bool { return n == FlagPassFile }}
	c, err := ResolveConn(flags, func(k string) string { return map[string]string{EnvPass: "envpass"}[k] })
	if err != nil || c.Pass.Value != "hunter2" || !strings.HasPrefix(c.Pass.Source, "--pass-file") {
		t.Fatalf("--pass-file: %+v, %v", c.Pass, err)
	}
	for _, tc := range []struct {
		content string
		want    string
	}{{"\nx", "first line is empty"}, {"", "first line is empty"}} {
		if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ResolveConn(flags, func(string) string { return "" }); Code(err) != ExitUsage || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
			t.Fatalf("pass file %q: %v", tc.content, err)
		}
	}
	both := ConnFlags{Pass: "x", PassFile: file, Changed: func(n string) bool { return n == FlagPass || n == FlagPassFile }}
	if _, err := ResolveConn(both, func(string) string { return "" }); Code(err) != ExitUsage {
		t.Fatalf("--pass with --pass-file: %v", err)
	}
}

// The settings override the URL; TLS is on with rediss:// or any setting;
// messages and the workers' environment keep the password hidden or out
// of argv.
func TestConnOverridesURL(t *testing.T) {
	tgt := RedisTarget{URL: "redis://urluser:urlpass@h:1/2", Source: "--redis", Conn: ConnSettings{
		Pass: Setting{"flagpass", "--pass"}, TLSInsecure: Setting{"true", "--tls-insecure"}, TLSSNI: Setting{"sni.example", "--tls-sni"},
	}}
	o, err := tgt.Options()
	if err != nil {
		t.Fatal(err)
	}
	if o.Username != "urluser" || o.Password != "flagpass" || o.DB != 2 || o.TLSConfig == nil || !o.TLSConfig.InsecureSkipVerify || o.TLSConfig.ServerName != "sni.example" {
		t.Fatalf("options: user %q password %q db %d tls %+v", o.Username, o.Password, o.DB, o.TLSConfig)
	}
	if got := redactMsg("x urlpass y flagpass z", tgt); got != "x xxxxx y xxxxx z" {
		t.Fatalf("redactMsg = %q", got)
	}
	if tgt.user() != "urluser" {
		t.Fatalf("user = %q", tgt.user())
	}
	o, err = RedisTarget{URL: "rediss://h:6380", Source: "t"}.Options()
	if err != nil || o.TLSConfig == nil || o.TLSConfig.ServerName != "h" {
		t.Fatalf("rediss: %+v, %v", o, err)
	}
	o, err = RedisTarget{URL: "redis://h:6380", Source: "t"}.Options()
	if err != nil || o.TLSConfig != nil {
		t.Fatalf("redis:// without TLS settings has TLS: %+v, %v", o.TLSConfig, err)
	}
	env := strings.Join(tgt.Environ(), "\n")
	for _, want := range []string{"RENEWLOCK_REDIS=redis://urluser:urlpass@h:1/2", "RENEWLOCK_PASS=flagpass", "RENEWLOCK_TLS_INSECURE=true", "RENEWLOCK_TLS_SNI=sni.example", "RENEWLOCK_USER=\n", "REDIS_URL=\n"} {
		if !strings.Contains(env+"\n", want) {
			t.Fatalf("Environ lacks %q:\n%s", want, env)
		}
	}
}
