package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// leastPrivilege points at the ACL a renewlock user needs.
const leastPrivilege = `The renewlock README, section "Least privilege", lists the commands, keys and channels a renewlock user needs.`

// replyPrefix returns the first word of err's Redis error reply (NOPERM,
// WRONGPASS, …), or "" if err holds no error reply.
func replyPrefix(err error) string {
	var re redis.Error
	if !errors.As(err, &re) {
		return ""
	}
	msg := re.Error()
	if i := strings.IndexByte(msg, ' '); i > 0 {
		return msg[:i]
	}
	return msg
}

// isAuthFailure reports whether err is a failed authentication.
func isAuthFailure(err error) bool {
	p := replyPrefix(err)
	return p == "WRONGPASS" || p == "NOAUTH"
}

// isPermission reports whether Redis refused for lack of rights: the
// library says so (renewlock.ErrPermission), or the reply is an ACL denial
// or an authentication failure (as on the initial PING, which does not go
// through the library).
func isPermission(err error) bool {
	return errors.Is(err, renewlock.ErrPermission) || isAuthFailure(err) || replyPrefix(err) == "NOPERM"
}

// redisFailure turns err, a failure of what (e.g. "status KEY") at target,
// into renewlock's exit: ExitNoPerm for a permission problem, ExitConfig
// for another error Redis returned that retrying cannot fix, and
// ExitUnavailable for the rest (unreachable, timeouts, transient replies).
// Messages never show the password.
func redisFailure(what string, target RedisTarget, err error) error {
	where := target.describe()
	switch {
	case isPermission(err):
		user := target.user()
		reply := redactErr(err, target)
		var re redis.Error
		if errors.As(err, &re) {
			reply = redactErr(re, target) // Redis's own words, without the library's
		}
		hint := leastPrivilege
		if isAuthFailure(err) {
			hint = "Check the user name and password (the URL, --user, --pass/--pass-file, $RENEWLOCK_USER, $RENEWLOCK_PASS). " + hint
		}
		return exitf(ExitNoPerm, "%s: permission problem: %s refused user %q: %s. %s",
			what, where, user, strings.TrimRight(reply, ". "), hint)
	case errors.Is(err, renewlock.ErrRejected):
		// The library quotes Redis and says what to fix.
		msg := libErr(err)
		if _, after, ok := strings.Cut(msg, "rejected by Redis: "); ok {
			msg = after
		}
		return exitf(ExitConfig, "%s: rejected by %s, and retrying cannot fix it: %s", what, where, redactMsg(msg, target))
	}
	if msg, ok := tlsProblem(err, target); ok {
		return exitf(ExitUnavailable, "%s: %s: TLS %s", what, where, redactMsg(msg, target))
	}
	if refusal := probeTLSRefusal(err, target); refusal != nil {
		if msg, ok := tlsProblem(refusal, target); ok {
			return exitf(ExitUnavailable, "%s: %s: TLS %s", what, where, redactMsg(msg, target))
		}
	}
	return exitf(ExitUnavailable, "%s: %s is unavailable: %s%s", what, where, redactErr(err, target), connectHint(err, target))
}

// redactMsg hides the target's password in msg.
func redactMsg(msg string, target RedisTarget) string {
	for _, pw := range target.secrets() {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

// tlsProblem explains a failed TLS handshake: a server certificate that
// does not verify, a server that refused the client's certificate (or its
// absence), or a port that does not speak TLS. ok is false for other
// errors.
func tlsProblem(err error, target RedisTarget) (msg string, ok bool) {
	c := target.Conn
	trusted := "a CA of the system's certificate store (give the CA that signed it with --tls-cacert FILE)"
	if c.TLSCACert.IsSet() {
		trusted = fmt.Sprintf("the CA in %s %s", c.TLSCACert.Source, c.TLSCACert.Value)
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Sprintf("certificate problem: the server's certificate is not signed by %s: %v", trusted, err), true
	case errors.As(err, &hostname):
		return fmt.Sprintf("certificate problem: the server's certificate is not valid for the name %q (%v); connect by a name the certificate lists, or name one with --tls-sni", hostname.Host, err), true
	case errors.As(err, &invalid):
		return fmt.Sprintf("certificate problem: the server's certificate is invalid: %v", err), true
	}
	text := err.Error()
	switch {
	case strings.Contains(text, "remote error: tls:"):
		if !c.TLSCert.IsSet() {
			return fmt.Sprintf("certificate problem: the server refused the handshake (%v); it probably requires a client certificate (tls-auth-clients yes): give --tls-cert and --tls-key", err), true
		}
		return fmt.Sprintf("certificate problem: the server refused the handshake (%v); it does not accept the client certificate %s %s (is it signed by the CA the server trusts, tls-ca-cert-file?)", err, c.TLSCert.Source, c.TLSCert.Value), true
	case strings.Contains(text, "first record does not look like a TLS handshake"):
		return fmt.Sprintf("problem: the server does not speak TLS on this port (%v); use a redis:// URL without --tls-* settings, or the server's tls-port", err), true
	case strings.HasPrefix(text, "tls: "):
		return fmt.Sprintf("problem: %v", err), true
	}
	return "", false
}

// probeTLSRefusal finds out why a TLS server dropped the connection when
// err, on a single server with TLS on, is only a reset or an early end of
// the stream. With TLS 1.3 the server checks the client's certificate after
// the client's side of the handshake is done, and its alert can lose the
// race with the client's first command, which then sees a reset. One more
// handshake and a read get the alert itself. It returns the read's error
// if it is the server's alert, else nil (it waits at most about 2 s, on
// this failure path only).
func probeTLSRefusal(err error, target RedisTarget) error {
	if !target.tlsOn() || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return nil
	}
	opts, perr := redis.ParseURL(target.URL)
	if perr != nil || opts.Network == "unix" || target.applyConn(opts) != nil || opts.TLSConfig == nil {
		return nil
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: opts.TLSConfig}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, derr := d.DialContext(ctx, "tcp", opts.Addr)
	if derr != nil {
		if strings.Contains(derr.Error(), "remote error: tls:") {
			return derr
		}
		return nil
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, rerr := conn.Read(make([]byte, 1)); rerr != nil && strings.Contains(rerr.Error(), "remote error: tls:") {
		return rerr
	}
	return nil
}

// connectHint suggests the other protocol when a connection failed the way
// a port of the other kind fails it: a TLS-only port closes a plain
// connection at once, and a plain port never answers a TLS handshake.
func connectHint(err error, target RedisTarget) string {
	switch {
	case target.tlsOn() && errors.Is(err, context.DeadlineExceeded):
		return " (with TLS on; a port that does not speak TLS never answers the handshake: is this the server's tls-port?)"
	case !target.tlsOn() && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		return " (if this port only speaks TLS, use a rediss:// URL or --tls-cacert)"
	}
	return ""
}
