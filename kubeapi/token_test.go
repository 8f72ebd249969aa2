package kubeapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/pki"
)

// TestTokenShape: a bootstrap token is what kube-apiserver's bootstrap
// authenticator accepts ([a-z0-9]{6}.[a-z0-9]{16}), a new one each time,
// and every character of the alphabet is drawn.
func TestTokenShape(t *testing.T) {
	seen := map[rune]bool{}
	tokens := map[string]bool{}
	for range 200 {
		id, err := randomString(6)
		if err != nil {
			t.Fatal(err)
		}
		secret, _ := randomString(16)
		tok := Token{ID: id, Secret: secret}.String()
		if !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(tok) {
			t.Fatalf("token %q", tok)
		}
		if tokens[tok] {
			t.Fatalf("token %q drawn twice", tok)
		}
		tokens[tok] = true
		for _, c := range id + secret {
			seen[c] = true
		}
	}
	if len(seen) != len(tokenChars) {
		t.Errorf("200 tokens drew %d of the %d characters", len(seen), len(tokenChars))
	}
}

// TestBootstrapKubeconfigReadByKubectl: kubectl (Debian's, an independent
// client) reads the bootstrap kubeconfig as a cluster at the static IP
// with the CA and the token.
func TestBootstrapKubeconfigReadByKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed: the kubeconfig is not read by an independent client")
	}
	p, err := pki.Ensure(t.TempDir(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{ID: "abcdef", Secret: "0123456789abcdef"}
	path := filepath.Join(t.TempDir(), "bootstrap.kubeconfig")
	if err := os.WriteFile(path, []byte(BootstrapKubeconfig("prod", "https://203.0.113.10", p.ClusterCA.CertPEM, tok)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "config", "view", "--kubeconfig", path, "--raw", "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl config view: %v: %s", err, out)
	}
	var cfg struct {
		CurrentContext string `json:"current-context"`
		Clusters       []struct {
			Cluster struct {
				Server string `json:"server"`
				CA     []byte `json:"certificate-authority-data"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			User struct {
				Token string `json:"token"`
			} `json:"user"`
		} `json:"users"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if cfg.CurrentContext != "prod" || len(cfg.Clusters) != 1 || cfg.Clusters[0].Cluster.Server != "https://203.0.113.10" ||
		string(cfg.Clusters[0].Cluster.CA) != p.ClusterCA.CertPEM || len(cfg.Users) != 1 || cfg.Users[0].User.Token != tok.String() {
		t.Errorf("kubectl reads: %s", out)
	}
}

// TestCACertHashIsKubeadms: the hash is the one kubeadm's documentation
// computes with openssl (the SHA-256 of the CA's public key, DER).
func TestCACertHashIsKubeadms(t *testing.T) {
	p, err := pki.Ensure(t.TempDir(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	got, err := CACertHash(p.ClusterCA.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	cmd := exec.Command("sh", "-c", "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der")
	cmd.Stdin = strings.NewReader(p.ClusterCA.CertPEM)
	der, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	if want := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Errorf("CACertHash %s, openssl says %s", got, want)
	}
	if _, err := CACertHash("not a certificate"); err == nil {
		t.Error("CACertHash of no certificate")
	}
}
