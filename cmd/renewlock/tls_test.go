//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock/internal/redisserver"
)

// tlsServer is a real redis-server serving TLS with certificates the test
// made; admin is a client on its plain loopback port, for setting up.
type tlsServer struct {
	*redisserver.TLSServer
	files *redisserver.TLSFiles
	admin *redis.Client
}

func startTLSServer(t *testing.T, authClients bool) *tlsServer {
	t.Helper()
	files, err := redisserver.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisserver.StartTLS(redisserver.Config{Dir: t.TempDir()}, files, authClients)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	admin := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	return &tlsServer{TLSServer: s, files: files, admin: admin}
}

// addUser creates an ACL user with every right on the server.
func (s *tlsServer) addUser(t *testing.T, user string) {
	t.Helper()
	if err := s.admin.Do(context.Background(), "ACL", "SETUSER", user, "reset", "on", ">"+secret, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
}

// 14. TLS like redis-cli: a rediss:// URL or any --tls-* flag (or its
// environment variable) turns TLS on; the server's certificate is checked
// against --tls-cacert; a certificate problem says so and names the file.
func TestTLSServerOnly(t *testing.T) {
	srv := startTLSServer(t, false)
	f := srv.files
	key := uniqueKey(t)
	ca := "--tls-cacert=" + f.CACert
	token := filepath.Join(t.TempDir(), "token")

	// A lock taken, renewed and released over TLS, by URL and CA flag.
	code, _, errOut := runTool(t, env(nil), "run", "--redis", srv.TLSURL(), ca, "-k", key, "--ttl", "1s", "--",
		"sh", "-c", `sleep 0.5; echo "$RENEWLOCK_TOKEN" > "$0"`, token)
	if code != 0 {
		t.Fatalf("run over TLS: exit %d, stderr %q", code, errOut)
	}
	if b, err := os.ReadFile(token); err != nil || len(strings.TrimSpace(string(b))) == 0 {
		t.Fatalf("the command did not run with a token: %q, %v", b, err)
	}

	plainURL := "redis://" + srv.TLSAddr()
	for _, tc := range []struct {
		name    string
		environ []string
		args    []string
	}{
		{"--tls-cacert turns TLS on", env(nil), []string{"--redis", plainURL, ca}},
		{"$RENEWLOCK_TLS_CACERT", env(nil, "RENEWLOCK_REDIS="+plainURL, "RENEWLOCK_TLS_CACERT="+f.CACert), nil},
		{"by host name", env(nil), []string{"--redis", "rediss://localhost:" + strconv.Itoa(srv.TLSPort()), ca}},
		{"--tls-sni", env(nil), []string{"--redis", srv.TLSURL(), ca, "--tls-sni", "localhost"}},
		{"--tls-insecure", env(nil), []string{"--redis", srv.TLSURL(), "--tls-insecure"}},
		{"$RENEWLOCK_TLS_INSECURE", env(nil, "RENEWLOCK_TLS_INSECURE=1"), []string{"--redis", srv.TLSURL()}},
		{"skip_verify in the URL", env(nil), []string{"--redis", srv.TLSURL() + "?skip_verify=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"list"}, tc.args...)
			if code, out, errOut := runTool(t, tc.environ, args...); code != 0 || !strings.Contains(out, "no locks held") {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		})
	}

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong CA", []string{"--redis", srv.TLSURL(), "--tls-cacert", f.OtherCACert},
			[]string{"TLS certificate problem", "not signed by the CA in --tls-cacert " + f.OtherCACert}},
		{"system CAs", []string{"--redis", srv.TLSURL()},
			[]string{"TLS certificate problem", "system's certificate store", "--tls-cacert"}},
		{"name not in the certificate", []string{"--redis", srv.TLSURL(), ca, "--tls-sni", "redis.example"},
			[]string{"TLS certificate problem", `"redis.example"`, "--tls-sni"}},
		{"TLS to a plain port", []string{"--redis", "rediss://" + srv.Addr(), ca},
			[]string{"unavailable", "is this the server's tls-port?"}},
		{"plain to the TLS port", []string{"--redis", plainURL},
			[]string{"unavailable", "use a rediss:// URL or --tls-cacert"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkExit(t, env(nil), 69, tc.want, append([]string{"status", "k"}, tc.args...)...)
		})
	}
}

// 15. Mutual TLS (tls-auth-clients yes): the client certificate from flags
// or the environment lets renewlock in, for a waiting run too (the grant
// comes over the TLS subscription); none, or one the server does not
// trust, is a clear certificate problem.
func TestTLSMutual(t *testing.T) {
	srv := startTLSServer(t, true)
	f := srv.files
	key := uniqueKey(t)
	mtls := []string{"--redis", srv.TLSURL(), "--tls-cacert", f.CACert, "--tls-cert", f.ClientCert, "--tls-key", f.ClientKey}

	dir := t.TempDir()
	holder := start(t, env(nil), append(append([]string{"run"}, mtls...), "-k", key, "--", "sh", "-c", `touch "$0/held"; sleep 1`, dir)...)
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(filepath.Join(dir, "held")); return err == nil }) {
		t.Fatalf("the holder never ran over mutual TLS; stderr %q", holder.stderr.String())
	}
	// The waiter authenticates through the environment alone.
	wenv := env(nil, "RENEWLOCK_REDIS="+srv.TLSURL(), "RENEWLOCK_TLS_CACERT="+f.CACert, "RENEWLOCK_TLS_CERT="+f.ClientCert, "RENEWLOCK_TLS_KEY="+f.ClientKey)
	code, out, errOut := runTool(t, wenv, "run", "-k", key, "--wait", "20s", "--", "sh", "-c", `echo "token $RENEWLOCK_TOKEN"`)
	if code != 0 || !strings.HasPrefix(out, "token ") {
		t.Fatalf("waiter over mutual TLS: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code := holder.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("holder: exit %d, stderr %q", code, holder.stderr.String())
	}
	if code, out, errOut := runTool(t, env(nil), append([]string{"status", key}, mtls...)...); code != 1 || !strings.Contains(out, "not held") {
		t.Fatalf("status over mutual TLS: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// watch and the exporter over mutual TLS too.
	if code, out, errOut := runTool(t, env(nil), append([]string{"watch", "--once"}, mtls...)...); code != 0 || !strings.Contains(out, "no locks held") {
		t.Fatalf("watch --once over mutual TLS: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if up := gauge(startExporter(t, env(nil), mtls...).scrape(t), "renewlock_up"); up != 1 {
		t.Fatalf("exporter over mutual TLS: renewlock_up %v", up)
	}

	checkExit(t, env(nil), 69, []string{"TLS certificate problem", "requires a client certificate", "--tls-cert"},
		"status", "k", "--redis", srv.TLSURL(), "--tls-cacert", f.CACert)
	checkExit(t, env(nil), 69, []string{"TLS certificate problem", "does not accept the client certificate --tls-cert " + f.OtherClientCert},
		"status", "k", "--redis", srv.TLSURL(), "--tls-cacert", f.CACert, "--tls-cert", f.OtherClientCert, "--tls-key", f.OtherClientKey)
}

// 16. Files that cannot be used are usage errors naming them, before any
// connection: a missing CA, a key that is not the certificate's, half a
// key pair, a file that is no certificate; TLS over a Unix socket.
func TestTLSBadFiles(t *testing.T) {
	files, err := redisserver.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope.crt")
	url := "rediss://127.0.0.1:1" // never reached
	for _, tc := range []struct {
		name    string
		environ []string
		args    []string
		want    []string
	}{
		{"missing CA", env(nil), []string{"--tls-cacert", missing}, []string{"--tls-cacert " + missing, "cannot read the CA certificate", "no such file"}},
		{"missing CA from env", env(nil, "RENEWLOCK_TLS_CACERT="+missing), nil, []string{"$RENEWLOCK_TLS_CACERT " + missing, "no such file"}},
		{"CA file without a certificate", env(nil), []string{"--tls-cacert", files.ClientKey}, []string{"--tls-cacert " + files.ClientKey, "no PEM certificate"}},
		{"key of another certificate", env(nil), []string{"--tls-cert", files.ClientCert, "--tls-key", files.OtherClientKey},
			[]string{"--tls-key " + files.OtherClientKey, "--tls-cert " + files.ClientCert, "does not match"}},
		{"certificate without key", env(nil), []string{"--tls-cert", files.ClientCert}, []string{"--tls-cert " + files.ClientCert, "--tls-key"}},
		{"key without certificate", env(nil), []string{"--tls-key", files.ClientKey}, []string{"--tls-key " + files.ClientKey, "--tls-cert"}},
		{"not a certificate", env(nil), []string{"--tls-cert", files.ClientKey, "--tls-key", files.ClientKey}, []string{"--tls-cert " + files.ClientKey, "not a usable PEM client certificate"}},
		{"missing client key", env(nil), []string{"--tls-cert", files.ClientCert, "--tls-key", missing}, []string{"--tls-key " + missing, "no such file"}},
		{"Unix socket", env(nil), []string{"--redis", "unix:///tmp/redis.sock", "--tls-insecure"}, []string{"--tls-insecure", "Unix socket"}},
		{"bad $RENEWLOCK_TLS_INSECURE", env(nil, "RENEWLOCK_TLS_INSECURE=maybe"), nil, []string{"RENEWLOCK_TLS_INSECURE", "true or false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--redis") {
				args = append(args, "--redis", url)
			}
			for _, sub := range [][]string{{"status", "k"}, {"list"}, {"run", "-k", "k", "--", "true"}, {"watch", "--once"}, {"exporter", "--listen", "127.0.0.1:0"}} {
				// The connection flags go first: after run's COMMAND they would be its.
				full := append(append([]string{sub[0]}, args...), sub[1:]...)
				checkExit(t, tc.environ, 64, tc.want, full...)
			}
		})
	}
	// The demo starts its own plain server unless told of one.
	checkExit(t, env(nil), 64, []string{"--tls-cacert applies to the Redis server named by --redis"}, "demo", "--tls-cacert", files.CACert)
}

// 17. An ACL user over TLS: --user and --pass, $RENEWLOCK_USER and
// $RENEWLOCK_PASS, --pass-file, and the URL's credentials, with the flag
// before the environment before the URL; no password is ever shown, not
// in errors nor in --help.
func TestTLSUserAndPassword(t *testing.T) {
	srv := startTLSServer(t, true)
	f := srv.files
	srv.addUser(t, "bob")
	tlsArgs := []string{"--tls-cacert", f.CACert, "--tls-cert", f.ClientCert, "--tls-key", f.ClientKey}
	urlWith := func(user, pw string) string {
		return strings.Replace(srv.TLSURL(), "rediss://", "rediss://"+user+":"+pw+"@", 1)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := "wrong-" + secret[:4]
	ok := func(t *testing.T, environ []string, args ...string) {
		t.Helper()
		args = append(append([]string{"list"}, tlsArgs...), args...)
		code, out, errOut := runTool(t, environ, args...)
		if code != 0 || strings.Contains(out+errOut, secret) {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	denied := func(t *testing.T, environ []string, user string, args ...string) {
		t.Helper()
		args = append(append([]string{"list"}, tlsArgs...), args...)
		checkExit(t, environ, 77, []string{"permission problem", "WRONGPASS", `user "` + user + `"`, "--pass"}, args...)
	}
	base := env(nil, "RENEWLOCK_REDIS="+srv.TLSURL())
	t.Run("flags", func(t *testing.T) { ok(t, base, "--user", "bob", "--pass", secret) })
	t.Run("environment", func(t *testing.T) {
		ok(t, env(nil, "RENEWLOCK_REDIS="+srv.TLSURL(), "RENEWLOCK_USER=bob", "RENEWLOCK_PASS="+secret))
	})
	t.Run("pass file", func(t *testing.T) { ok(t, base, "--user", "bob", "--pass-file", pwFile) })
	t.Run("URL", func(t *testing.T) { ok(t, env(nil, "RENEWLOCK_REDIS="+urlWith("bob", secret))) })
	t.Run("env before URL", func(t *testing.T) {
		ok(t, env(nil, "RENEWLOCK_REDIS="+urlWith("bob", wrong), "RENEWLOCK_PASS="+secret))
	})
	t.Run("flag before env", func(t *testing.T) {
		ok(t, env(nil, "RENEWLOCK_REDIS="+srv.TLSURL(), "RENEWLOCK_USER=carol", "RENEWLOCK_PASS="+wrong), "--user", "bob", "--pass", secret)
	})
	t.Run("wrong flag beats right env", func(t *testing.T) {
		denied(t, env(nil, "RENEWLOCK_REDIS="+srv.TLSURL(), "RENEWLOCK_USER=bob", "RENEWLOCK_PASS="+secret), "bob", "--pass", wrong)
	})
	t.Run("wrong password shown nowhere", func(t *testing.T) {
		// The password is wrong, so it must not leak through the error either.
		args := append(append([]string{"run"}, tlsArgs...), "--user", "bob", "--pass", secret+"x", "-k", "k", "--", "true")
		checkExit(t, base, 77, []string{"permission problem", `user "bob"`}, args...)
		code, out, errOut := runTool(t, base, append(append([]string{"status"}, tlsArgs...), "--user", "bob", "--pass", secret+"x", "k")...)
		if code != 77 || strings.Contains(out+errOut, secret) {
			t.Fatalf("status with a wrong password: exit %d, %q %q", code, out, errOut)
		}
	})
	t.Run("--pass with --pass-file", func(t *testing.T) {
		checkExit(t, base, 64, []string{"--pass and --pass-file exclude each other"}, "list", "--pass", secret, "--pass-file", pwFile)
	})
	t.Run("missing pass file", func(t *testing.T) {
		checkExit(t, base, 64, []string{"--pass-file /nonexistent/pw", "no such file"}, "list", "--pass-file", "/nonexistent/pw")
	})
	t.Run("help", func(t *testing.T) {
		for _, sub := range []string{"run", "status", "list", "release", "watch", "exporter"} {
			code, out, errOut := runTool(t, env(nil, "RENEWLOCK_PASS="+secret), sub, "--pass", secret, "--help")
			if code != 0 || strings.Contains(out+errOut, secret) || !strings.Contains(out, "--tls-cacert") || !strings.Contains(out, "--pass-file") {
				t.Fatalf("%s --help: exit %d, shows the password or lacks the TLS flags:\n%s%s", sub, code, out, errOut)
			}
		}
	})
}

// 18. The demo against a mutual-TLS server as an ACL user: its workers
// connect as it does, with the password and TLS settings handed over in
// their environment, never on a command line (ps).
func TestTLSDemo(t *testing.T) {
	srv := startTLSServer(t, true)
	f := srv.files
	srv.addUser(t, "bob")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(srv.TLSURL(), "rediss://", "rediss://bob:"+secret+"x@", 1) // a wrong password the file overrides
	demo := start(t, env(nil), "demo", "--redis", url, "--pass-file", pwFile,
		"--tls-cacert", f.CACert, "--tls-cert", f.ClientCert, "--tls-key", f.ClientKey)
	workers := map[int]bool{}
	for done := false; !done; {
		select {
		case <-demo.done:
			done = true
		case <-time.After(20 * time.Millisecond):
		}
		for _, pid := range descendants(demo.cmd.Process.Pid) {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if err != nil || !strings.Contains(string(b), "demo-worker") {
				continue
			}
			workers[pid] = true
			if strings.Contains(string(b), secret) || strings.Contains(string(b), "rediss://") {
				t.Fatalf("worker %d's command line shows the URL or password: %q", pid, b)
			}
		}
	}
	if demo.code != 0 {
		t.Fatalf("demo over mutual TLS: exit %d; stderr:\n%s\nstdout:\n%s", demo.code, demo.stderr.String(), demo.stdout.String())
	}
	checkDemo(t, demo.stdout.String(), "rediss://bob:xxxxx@")
	if len(workers) < 3 || strings.Contains(demo.stdout.String()+demo.stderr.String(), secret) {
		t.Fatalf("saw %d workers; output:\n%s", len(workers), demo.stdout.String())
	}
}
