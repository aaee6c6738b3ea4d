//go:build unix

package cli

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/renewlock/renewlock/internal/redisserver"
)

// A server that requires client certificates refuses one without (or with
// a foreign one) by an alert after the client's side of the TLS 1.3
// handshake: a client whose first write lost that race saw only a reset
// (TestTLSMutual failed so on a loaded machine). The probe reads the alert.
func TestProbeTLSRefusal(t *testing.T) {
	files, err := redisserver.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := redisserver.StartTLS(redisserver.Config{Dir: t.TempDir()}, files, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	reset := &wrapped{syscall.ECONNRESET}
	ca := Setting{Value: files.CACert, Source: "--tls-cacert"}
	for _, tc := range []struct {
		name string
		conn ConnSettings
		want string // in tlsProblem's message for the probe's error; "" none
	}{
		{"no client certificate", ConnSettings{TLSCACert: ca}, "requires a client certificate"},
		{"a foreign client certificate", ConnSettings{TLSCACert: ca,
			TLSCert: Setting{Value: files.OtherClientCert, Source: "--tls-cert"}, TLSKey: Setting{Value: files.OtherClientKey, Source: "--tls-key"}},
			"does not accept the client certificate --tls-cert " + files.OtherClientCert},
		{"an accepted certificate", ConnSettings{TLSCACert: ca,
			TLSCert: Setting{Value: files.ClientCert, Source: "--tls-cert"}, TLSKey: Setting{Value: files.ClientKey, Source: "--tls-key"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := RedisTarget{URL: srv.TLSURL(), Source: "--redis", Conn: tc.conn}
			refusal := probeTLSRefusal(reset, target)
			if tc.want == "" {
				if refusal != nil {
					t.Fatalf("probe = %v, want nil (the server accepts the certificate)", refusal)
				}
				return
			}
			if refusal == nil {
				t.Fatal("probe found no alert")
			}
			if msg, ok := tlsProblem(refusal, target); !ok || !strings.Contains(msg, tc.want) {
				t.Fatalf("tlsProblem(%v) = %q, %v; want %q", refusal, msg, ok, tc.want)
			}
		})
	}
	// Not a reset, or TLS off: no probe.
	target := RedisTarget{URL: srv.TLSURL(), Source: "--redis", Conn: ConnSettings{TLSCACert: ca}}
	if probeTLSRefusal(errors.New("timeout"), target) != nil {
		t.Fatal("probed for an error that is not a reset")
	}
	if probeTLSRefusal(reset, RedisTarget{URL: "redis://" + srv.Addr(), Source: "--redis"}) != nil {
		t.Fatal("probed without TLS")
	}
}

// wrapped is an error that wraps a syscall error, as a net.OpError does.
type wrapped struct{ err error }

func (w *wrapped) Error() string { return "write tcp: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
