//go:build unix

package redisserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// TLSFiles are the PEM files of a small PKI for tests, made by
// GenerateTLS: a CA, a server certificate for 127.0.0.1, ::1 and localhost
// signed by it, a client certificate signed by it, and a second CA with a
// client certificate of its own, which the first CA did not sign.
type TLSFiles struct {
	Dir                    string
	CACert                 string // the CA that signed ServerCert and ClientCert
	ServerCert, ServerKey  string
	ClientCert, ClientKey  string
	OtherCACert            string // a CA that signed neither
	OtherClientCert        string // signed by OtherCACert
	OtherClientKey         string
	ServerName, ClientName string // the certificates' common names
}

// GenerateTLS writes a CA, a server and a client certificate with their
// keys (ECDSA P-256) into dir, valid from an hour ago for a day.
func GenerateTLS(dir string) (*TLSFiles, error) {
	f := &TLSFiles{
		Dir:             dir,
		CACert:          filepath.Join(dir, "ca.crt"),
		ServerCert:      filepath.Join(dir, "server.crt"),
		ServerKey:       filepath.Join(dir, "server.key"),
		ClientCert:      filepath.Join(dir, "client.crt"),
		ClientKey:       filepath.Join(dir, "client.key"),
		OtherCACert:     filepath.Join(dir, "other-ca.crt"),
		OtherClientCert: filepath.Join(dir, "other-client.crt"),
		OtherClientKey:  filepath.Join(dir, "other-client.key"),
		ServerName:      "localhost",
		ClientName:      "renewlock-test-client",
	}
	ca, caKey, err := newCA("renewlock test CA")
	if err != nil {
		return nil, err
	}
	other, otherKey, err := newCA("renewlock other test CA")
	if err != nil {
		return nil, err
	}
	if err := writeCert(f.CACert, ca.Raw); err != nil {
		return nil, err
	}
	if err := writeCert(f.OtherCACert, other.Raw); err != nil {
		return nil, err
	}
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: f.ServerName},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := issue(server, ca, caKey, f.ServerCert, f.ServerKey); err != nil {
		return nil, err
	}
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: f.ClientName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := issue(client, ca, caKey, f.ClientCert, f.ClientKey); err != nil {
		return nil, err
	}
	otherClient := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "renewlock other client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := issue(otherClient, other, otherKey, f.OtherClientCert, f.OtherClientKey); err != nil {
		return nil, err
	}
	return f, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
}

func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// issue signs tmpl with the CA and writes the certificate and a new key.
func issue(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return err
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeCert(certPath, der); err != nil {
		return err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600)
}

func writeCert(path string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// TLSServer is a redis-server that also serves TLS on a second loopback
// port. Its plain port (Addr, URL) stays open on 127.0.0.1 for the
// harness: the readiness check and administration of the test.
type TLSServer struct {
	*Server
	tlsPort int
}

// StartTLS launches a server like Start whose TLS port uses the server
// certificate of files and trusts files.CACert for client certificates;
// with authClients, a TLS client must present one (tls-auth-clients yes).
func StartTLS(cfg Config, files *TLSFiles, authClients bool) (*TLSServer, error) {
	auth := "no"
	if authClients {
		auth = "yes"
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var port int
		if port, err = FreePort(); err != nil {
			continue
		}
		c := cfg
		c.Args = append([]string{
			"--tls-port", strconv.Itoa(port),
			"--tls-cert-file", files.ServerCert,
			"--tls-key-file", files.ServerKey,
			"--tls-ca-cert-file", files.CACert,
			"--tls-auth-clients", auth,
		}, cfg.Args...)
		var s *Server
		if s, err = Start(c); err == nil {
			return &TLSServer{Server: s, tlsPort: port}, nil
		}
	}
	return nil, fmt.Errorf("redisserver: starting a TLS server: %w", err)
}

// TLSPort returns the server's TLS port.
func (s *TLSServer) TLSPort() int { return s.tlsPort }

// TLSAddr returns "127.0.0.1:TLSPORT".
func (s *TLSServer) TLSAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tlsPort)) }

// TLSURL returns "rediss://127.0.0.1:TLSPORT".
func (s *TLSServer) TLSURL() string { return "rediss://" + s.TLSAddr() }
