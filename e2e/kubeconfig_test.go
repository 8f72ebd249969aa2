package e2e

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestKubeconfig: kubeha kubeconfig writes an admin kubeconfig for the
// static IP, mode 0600, with a client certificate of group system:masters
// signed by the cluster CA, and prints no key material; without --out it
// refuses.
func TestKubeconfig(t *testing.T) {
	c, s := appliedCluster(t, "kc", 1, false)
	out := filepath.Join(c.dir, "admin.kubeconfig")
	r := c.kubeha("kubeconfig", "-f", c.spec, "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "server https://"+s.StaticIP.Address) {
		t.Fatalf("kubeconfig: %+v", r)
	}
	noKeyMaterial(t, "kubeconfig output", r.stdout, r.stderr)
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig file: %v %v", err, fi)
	}
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), "server: https://"+s.StaticIP.Address+"\n") {
		t.Fatalf("kubeconfig server:\n%s", data)
	}
	field := func(name string) []byte {
		m := regexp.MustCompile(name + `: (\S+)`).FindSubmatch(data)
		if m == nil {
			t.Fatalf("no %s", name)
		}
		b, err := base64.StdEncoding.DecodeString(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	parse := func(b []byte) *x509.Certificate {
		block, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	ca, cert := parse(field("certificate-authority-data")), parse(field("client-certificate-data"))
	if err := cert.CheckSignatureFrom(ca); err != nil || !slices.Contains(cert.Subject.Organization, "system:masters") {
		t.Fatalf("admin certificate %v: %v", cert.Subject, err)
	}
	if len(field("client-key-data")) == 0 {
		t.Fatal("no key")
	}
	if r := c.kubeha("status", "-f", c.spec); !strings.Contains(r.stdout, "Emulated masters run: etcd only\n") {
		t.Errorf("status does not say the masters run etcd only: %+v", r)
	}
	if r := c.kubeha("kubeconfig", "-f", c.spec); r.code != 1 || !strings.Contains(r.stderr, "--out FILE is required") {
		t.Fatalf("kubeconfig without --out: %+v", r)
	}
}
