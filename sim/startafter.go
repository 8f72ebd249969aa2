package sim

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeha/kubeha/metadata"
)

// waitForEarlier does what the startup script's wait_for_earlier_members
// does on a VM: a member's first start waits until each member it starts
// after serves its peer port (an HTTP answer to /version, with this
// member's peer certificate), or metadata.StartAfterBound.
func (m *member) waitForEarlier(ctx context.Context) {
	if _, err := os.Stat(filepath.Join(m.dataDir, "member")); err == nil || len(m.cfg.StartAfter) == 0 {
		return
	}
	client := &http.Client{Timeout: time.Second}
	if m.tls != nil {
		cert, err := tls.X509KeyPair([]byte(m.tls.PeerCert), []byte(m.tls.PeerKey))
		if err != nil {
			return // the member's own start reports its certificates
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true}} //nolint:gosec // a probe of whether the peer serves; nothing is trusted from it
	}
	deadline := time.Now().Add(metadata.StartAfterBound)
	for _, u := range m.cfg.StartAfter {
		if m.tls == nil {
			u = strings.Replace(u, "https://", "http://", 1)
		}
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if resp, err := client.Get(u + "/version"); err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}
