package kubeapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Token is a bootstrap token: ID.Secret, as a kubelet presents it.
type Token struct {
	ID, Secret string
	Expires    time.Time // zero: never
}

// String is the token as a bearer credential. It is secret: print it only
// where the user asked for it.
func (t Token) String() string { return t.ID + "." + t.Secret }

const tokenChars = "abcdefghijklmnopqrstuvwxyz0123456789"

// randomString draws n characters of tokenChars uniformly (a byte past
// the last whole multiple of 36 is drawn again).
func randomString(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random bytes for a token: %w", err)
		}
		for _, c := range buf {
			if int(c) < 256-256%len(tokenChars) && len(out) < n {
				out = append(out, tokenChars[int(c)%len(tokenChars)])
			}
		}
	}
	return string(out), nil
}

// CreateBootstrapToken creates a bootstrap token Secret in kube-system
// (type bootstrap.kubernetes.io/token) that authenticates as a member of
// group and signs kube-public/cluster-info; ttl 0 makes one that never
// expires. tokencleaner deletes it once expired.
func (c *Client) CreateBootstrapToken(ctx context.Context, group, description string, ttl time.Duration, now time.Time) (Token, error) {
	id, err := randomString(6)
	if err != nil {
		return Token{}, err
	}
	secret, err := randomString(16)
	if err != nil {
		return Token{}, err
	}
	t := Token{ID: id, Secret: secret}
	data := map[string]string{
		"token-id": id, "token-secret": secret, "description": description,
		"usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true", "auth-extra-groups": group,
	}
	if ttl > 0 {
		t.Expires = now.Add(ttl).UTC().Truncate(time.Second)
		data["expiration"] = t.Expires.Format(time.RFC3339)
	}
	body := map[string]any{
		"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
		"metadata":   map[string]any{"name": "bootstrap-token-" + id, "namespace": "kube-system"},
		"stringData": data,
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/namespaces/kube-system/secrets", body, nil); err != nil {
		return Token{}, fmt.Errorf("create a bootstrap token: %w", err)
	}
	return t, nil
}

// BootstrapKubeconfig is the kubeconfig a kubelet bootstraps with: the
// cluster at server, trusted by caPEM, and the token as its credential.
func BootstrapKubeconfig(cluster, server, caPEM string, t Token) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: kubelet-bootstrap
  user:
    token: %[4]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: kubelet-bootstrap
current-context: %[1]s
`, cluster, server, base64.StdEncoding.EncodeToString([]byte(caPEM)), t.String())
}

// CACertHash is kubeadm's --discovery-token-ca-cert-hash of a CA:
// sha256: and the hex SHA-256 of its Subject Public Key Info.
func CACertHash(caPEM string) (string, error) {
	block, _ := pem.Decode([]byte(caPEM))
	if block == nil {
		return "", errors.New("the cluster CA is not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("read the cluster CA: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
