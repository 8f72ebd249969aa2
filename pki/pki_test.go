package pki

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnsureCreatesAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	p, err := Ensure(dir, "prod")
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("PKI dir mode %v, want 0700", fi.Mode().Perm())
	}
	for _, name := range []string{EtcdCAKey, ClusterCAKey, ClientKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", name, err, fi.Mode().Perm())
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, EtcdCACert))
	p2, err := Ensure(dir, "prod")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, EtcdCACert))
	if string(before) != string(after) || !p2.EtcdCA.Cert.Equal(p.EtcdCA.Cert) {
		t.Fatal("Ensure replaced an existing CA")
	}
	if !p.EtcdCA.Cert.IsCA || p.EtcdCA.Cert.Equal(p.ClusterCA.Cert) {
		t.Error("the etcd and cluster CAs must be two CAs")
	}
	// A CA whose key went missing is never silently replaced.
	if err := os.Remove(filepath.Join(dir, ClusterCAKey)); err != nil {
		t.Fatal(err)
	}
	_, err = Ensure(dir, "prod")
	if err == nil || !strings.Contains(err.Error(), "never overwrites a CA") || !strings.Contains(err.Error(), ClusterCAKey) {
		t.Fatalf("Ensure with a lone CA certificate: %v", err)
	}
	after, _ = os.ReadFile(filepath.Join(dir, ClusterCACert))
	if len(after) == 0 {
		t.Fatal("the lone CA certificate was removed")
	}
}

func TestClientCertificateRenewal(t *testing.T) {
	dir := t.TempDir()
	past := time.Now().Add(-LeafLifetime + 10*24*time.Hour) // expires in 10 days
	if _, err := Ensure(dir, "prod", WithClock(func() time.Time { return past })); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(filepath.Join(dir, ClientCertFile))
	p, err := Ensure(dir, "prod")
	if err != nil {
		t.Fatal(err)
	}
	renewed, _ := os.ReadFile(filepath.Join(dir, ClientCertFile))
	if string(old) == string(renewed) {
		t.Fatal("a client certificate expiring within 30 days was not renewed")
	}
	cert, _ := ParseCert(string(renewed))
	if Expiring(cert, time.Now()) || cert.CheckSignatureFrom(p.EtcdCA.Cert) != nil {
		t.Errorf("renewed certificate: expires %v", cert.NotAfter)
	}
	// A certificate good for long is kept.
	if _, err := Ensure(dir, "prod"); err != nil {
		t.Fatal(err)
	}
	kept, _ := os.ReadFile(filepath.Join(dir, ClientCertFile))
	if string(kept) != string(renewed) {
		t.Error("a valid client certificate was replaced")
	}
	tlsCfg, err := LoadClientTLS(dir)
	if err != nil || tlsCfg == nil || len(tlsCfg.Certificates) != 1 {
		t.Fatalf("LoadClientTLS: %v", err)
	}
	if cfg, err := LoadClientTLS(t.TempDir()); cfg != nil || err != nil {
		t.Errorf("LoadClientTLS of an empty dir: %v %v", cfg, err)
	}
}

func verify(t *testing.T, name, certPEM string, ca *CA, host string, usage x509.ExtKeyUsage) {
	t.Helper()
	cert, err := ParseCert(certPEM)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Errorf("%s does not verify for %q: %v", name, host, err)
	}
}

func TestIssueReplica(t *testing.T) {
	p, err := Ensure(t.TempDir(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	req := ReplicaRequest{Cluster: "prod", Name: "prod-master-abc", InternalIP: "10.0.0.7", StaticIP: "203.0.113.10"}
	c, err := p.IssueReplica(req)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, "etcd peer", c.PeerCert, p.EtcdCA, "10.0.0.7", x509.ExtKeyUsageServerAuth)
	verify(t, "etcd peer", c.PeerCert, p.EtcdCA, "10.0.0.7", x509.ExtKeyUsageClientAuth)
	verify(t, "etcd server", c.ServerCert, p.EtcdCA, "10.0.0.7", x509.ExtKeyUsageServerAuth)
	verify(t, "etcd server", c.ServerCert, p.EtcdCA, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	verify(t, "etcd server", c.ServerCert, p.EtcdCA, "prod-master-abc", x509.ExtKeyUsageServerAuth)
	verify(t, "apiserver etcd client", c.APIServerEtcdClientCert, p.EtcdCA, "", x509.ExtKeyUsageClientAuth)
	// The API server certificate: the static IP, the replica's own IP and the
	// service names (the HA-masters guide's "Master certificates").
	for _, host := range []string{"203.0.113.10", "10.0.0.7", "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "prod-master"} {
		verify(t, "apiserver", c.APIServerCert, p.ClusterCA, host, x509.ExtKeyUsageServerAuth)
	}
	api, _ := ParseCert(c.APIServerCert)
	if api.VerifyHostname("198.51.100.3") == nil {
		t.Error("the API server certificate is valid for an ephemeral IP it must not name")
	}
	// The etcd CA does not sign API server certificates, and vice versa.
	if api.CheckSignatureFrom(p.EtcdCA.Cert) == nil {
		t.Error("the API server certificate is signed by the etcd CA")
	}
	if _, err := p.IssueReplica(ReplicaRequest{Name: "x", InternalIP: "not-an-ip"}); err == nil {
		t.Error("issued for a bad IP")
	}
}

func TestNoKeyMaterialInOutput(t *testing.T) {
	p, err := Ensure(t.TempDir(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.IssueReplica(ReplicaRequest{Cluster: "prod", Name: "m", InternalIP: "10.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v", *c, c, c), fmt.Sprint(c.Metadata()), fmt.Sprintf("%+v", *c.Metadata())} {
		if strings.Contains(s, "PRIVATE KEY") {
			t.Errorf("key material printed: %.80s", s)
		}
	}
	// Errors name files, never their content.
	dir := t.TempDir()
	if _, err := Ensure(dir, "prod"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, EtcdCAKey), []byte("-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Ensure(dir, "prod")
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), EtcdCAKey) {
		t.Fatalf("error for a broken CA key: %v", err)
	}
}
