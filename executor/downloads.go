package executor

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// bootedVersions are the Kubernetes versions of the masters p boots: the
// ones it creates, and the ones it renews or restores (booted again as
// they are).
func bootedVersions(p *planner.Plan, c *spec.Cluster, obs *state.Cluster) []string {
	var out []string
	for _, s := range p.Steps {
		v := ""
		switch s.Action {
		case planner.CreateInstance:
			v = c.Spec.Kubernetes.Version
			if s.Instance != nil && s.Instance.Config.KubernetesVersion != "" {
				v = s.Instance.Config.KubernetesVersion
			}
		case planner.RenewCertificates, planner.RestoreMember:
			v = c.Spec.Kubernetes.Version
			if obs != nil {
				for _, in := range obs.Instances {
					if in.Name == s.Target && in.Config != nil && in.Config.KubernetesVersion != "" {
						v = in.Config.KubernetesVersion
					}
				}
			}
		}
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// CheckDownloads refuses a plan that boots a master which could not
// verify the kubelet it downloads (no digest known for its version), so
// that this is found before the first step changes anything.
func CheckDownloads(p *planner.Plan, c *spec.Cluster, obs *state.Cluster, d spec.Downloads) error {
	for _, v := range bootedVersions(p, c, obs) {
		if _, _, err := c.Kubelet(v, d); err != nil {
			return err
		}
	}
	return nil
}

var digestRe = regexp.MustCompile(`^[0-9a-f]{128}$`)

// ResolveDownloads finds the digest of each kubelet the masters p boots
// download, fetching the release's kubelet.sha512 (as kube-up and the
// kubeadm install guide get theirs) for a version whose digest neither
// the spec nor kubeha carries; it records them in p.Kubelets and returns
// d with the fetched ones, which every master the apply boots then checks.
// pinned are digests already fetched (a saved plan's): they are used, not
// fetched again. An unreachable release or a file that is no digest is an
// error naming the URL, before anything changes.
func ResolveDownloads(ctx context.Context, p *planner.Plan, c *spec.Cluster, obs *state.Cluster, d spec.Downloads, pinned []planner.Kubelet) (spec.Downloads, error) {
	d.Fetched = maps.Clone(d.Fetched)
	if d.Fetched == nil {
		d.Fetched = map[string]string{}
	}
	p.Kubelets = nil
	for _, v := range bootedVersions(p, c, obs) {
		source, sumURL := c.KubeletDigestSource(v, d)
		if source == "" {
			i := slices.IndexFunc(pinned, func(k planner.Kubelet) bool { return k.Version == v && k.Source == sumURL })
			if i >= 0 {
				d.Fetched[v] = pinned[i].SHA512
			} else {
				sum, err := fetchDigest(ctx, sumURL)
				if err != nil {
					return d, fmt.Errorf("spec.kubernetes: the digest of the kubelet of Kubernetes %s: %w; set spec.kubernetes.kubeletSHA512 to the release's digest, or spec.kubernetes.releaseURL to a reachable mirror", v, err)
				}
				d.Fetched[v] = sum
			}
			source = sumURL
		}
		url, sum, err := c.Kubelet(v, d)
		if err != nil {
			return d, err
		}
		p.Kubelets = append(p.Kubelets, planner.Kubelet{Version: v, URL: url, SHA512: sum, Source: source})
	}
	return d, nil
}

// fetchDigest reads a release's .sha512 file: 128 hexadecimal digits,
// optionally followed by the file's name (sha512sum's format).
func fetchDigest(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", url, err)
	}
	fields := strings.Fields(string(body))
	if len(fields) == 0 || !digestRe.MatchString(strings.ToLower(fields[0])) {
		return "", fmt.Errorf("fetch %s: it holds no SHA-512 digest (128 hexadecimal digits)", url)
	}
	return strings.ToLower(fields[0]), nil
}
