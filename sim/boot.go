package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
)

// A VM's boot: its metadata, its boot time, and the wait of a member's
// first start for the members it starts after.

// allItems is an instance's metadata, as its metadata server serves it.
func allItems(in *compute.Instance) map[string]string {
	out := map[string]string{}
	if in.Metadata != nil {
		for _, it := range in.Metadata.Items {
			if it.Value != nil {
				out[it.Key] = *it.Value
			}
		}
	}
	return out
}

// booted waits out the VM's boot time; false when the instance stopped
// meanwhile.
func (m *member) booted(ctx context.Context) bool {
	if m.bootDelay <= 0 {
		return true
	}
	select {
	case <-time.After(m.bootDelay):
		return true
	case <-ctx.Done():
		m.set("stopped", nil)
		return false
	}
}

// waitForEarlier does what the startup script's wait_for_earlier_members
// does on a VM: a member's first start waits until each member it starts
// after serves its peer port (an HTTP answer to /version, with this
// member's peer certificate), or metadata.StartAfterBound; one that is not
// there at all (its address refuses) only metadata.StartAfterAbsent.
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
		absent := time.Now().Add(metadata.StartAfterAbsent)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			resp, err := client.Get(u + "/version")
			if err == nil {
				resp.Body.Close()
				break
			}
			if errors.Is(err, syscall.ECONNREFUSED) && time.Now().After(absent) {
				break // not there: its boot failed, or it is slower
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}
