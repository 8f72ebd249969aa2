package observe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeha/kubeha/pki"
)

// diagnoseTLS tells a certificate problem from an etcd that is down, when
// no member answered the member list: it makes a TLS handshake with each
// endpoint itself. It returns "" when no handshake failed on a certificate
// (the members are down or unreachable), else what failed, naming the
// files in pkiDir that kubeha's client uses.
func diagnoseTLS(ctx context.Context, endpoints []string, cfg *tls.Config, timeout time.Duration, pkiDir string) string {
	type found struct{ endpoint, what string }
	results := make(chan found, len(endpoints))
	for _, ep := range endpoints {
		go func() { results <- found{ep, handshake(ctx, ep, cfg, timeout)} }()
	}
	var first found
	for range endpoints {
		if f := <-results; f.what != "" && first.what == "" {
			first = f
		}
	}
	if first.what == "" {
		return ""
	}
	file := func(name string) string { return filepath.Join(pkiDir, name) }
	return fmt.Sprintf("etcd at %s and kubeha do not trust each other's certificates: %s. kubeha uses the etcd CA %s and its client certificate %s with key %s: they are not the ones this cluster's etcd was built with (another cluster's PKI directory, or files replaced). Put this cluster's PKI directory back from its backup; do not restore etcd, its data is not at fault",
		first.endpoint, first.what, file(pki.EtcdCACert), file(pki.ClientCertFile), file(pki.ClientKeyFile))
}

// handshake says what certificate problem a TLS connection to endpoint
// meets, or "".
func handshake(ctx context.Context, endpoint string, cfg *tls.Config, timeout time.Duration) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	c := cfg.Clone()
	c.NextProtos = []string{"h2"}
	c.ServerName = u.Hostname()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{Config: c}
	conn, err := d.DialContext(dctx, "tcp", u.Host)
	if err != nil {
		return certProblem(err)
	}
	defer conn.Close()
	// In TLS 1.3 the server checks the client's certificate after the
	// handshake: its refusal arrives as an alert on the first read.
	_ = conn.SetReadDeadline(time.Now().Add(min(timeout, 500*time.Millisecond)))
	_, err = conn.Read(make([]byte, 1))
	return certProblem(err)
}

// certProblem says whether err is a certificate problem, and which.
func certProblem(err error) string {
	if err == nil {
		return ""
	}
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown), errors.As(err, &verify):
		return "the member's certificate is not signed by kubeha's etcd CA (" + err.Error() + ")"
	case errors.As(err, &invalid), errors.As(err, &hostname):
		return "the member's certificate is not valid for it (" + err.Error() + ")"
	}
	var alert tls.AlertError
	var opErr *net.OpError
	if errors.As(err, &alert) || (errors.As(err, &opErr) && strings.Contains(err.Error(), "remote error: tls:")) {
		return "the member refuses kubeha's client certificate (" + err.Error() + ")"
	}
	return ""
}
