package metadata

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// The add-ons kubeha ships, kept in sync by the masters' add-on manager
// (kube-up's kube-addons.sh): node bootstrap RBAC, kube-public/cluster-info,
// CoreDNS and kube-proxy.
//
//go:embed addons/*.yaml
var addonFiles embed.FS

// Add-on settings, kube-up's defaults.
const (
	// BootstrapGroup is the group of the bootstrap tokens kubeha join
	// makes (auth-extra-groups): the add-ons let it ask for a node's first
	// client certificate, approved automatically.
	BootstrapGroup = "system:bootstrappers:kubeha:default-node-token"
	// DNSServerIP is the kube-dns Service's IP (kube-up's DNS_SERVER_IP).
	DNSServerIP = "10.0.0.10"
	// DNSDomain is the cluster's DNS domain (kube-up's DNS_DOMAIN).
	DNSDomain = "cluster.local"
	// CoreDNSImage is the CoreDNS of kube-up's add-on at the release.
	CoreDNSImage = "registry.k8s.io/coredns/coredns:v1.14.6"
	// KubeProxyImageRepo is kube-proxy's, tagged with the release.
	KubeProxyImageRepo = "registry.k8s.io/kube-proxy"
	// AddonManagerImage is kube-up's add-on manager: kube-addons.sh with a
	// kubectl.
	AddonManagerImage = "registry.k8s.io/addon-manager/kube-addon-manager:v9.1.8"
	// DefaultAddonCheckInterval is how often the add-on manager applies the
	// add-ons (kube-addons.sh's ADDON_CHECK_INTERVAL_SEC).
	DefaultAddonCheckInterval = time.Minute
	// UserAddonDir is where the user's add-ons (spec.addons.dir) go in the
	// masters' add-on directory.
	UserAddonDir = "user"
	// MasterNodeLabel is the label each master's kubelet registers its Node
	// with, valued with the cluster's name: kubeha finds its masters'
	// Nodes by it (a kubelet may not set node-role.kubernetes.io labels).
	MasterNodeLabel = "kubeha.io/master"
	// MaxAddonsValue is the largest metadata value GCE accepts (256 KiB).
	MaxAddonsValue = 256 << 10
)

// addonValues fill the add-on templates.
type addonValues struct {
	BootstrapGroup, CAData, Server, DNSDomain, DNSServerIP, CoreDNSImage, KubeProxyImage string
}

// Addons are the files of the masters' add-on directory: kubeha's, then
// the user's under user/ (their paths as they are in spec.addons.dir).
func Addons(b Boot) (map[string]string, error) {
	if b.TLS == nil || b.TLS.ClusterCA == "" {
		return nil, fmt.Errorf("render the add-ons of %s: no cluster CA", b.Name)
	}
	v := addonValues{BootstrapGroup: BootstrapGroup, CAData: base64.StdEncoding.EncodeToString([]byte(b.TLS.ClusterCA)),
		Server: "https://" + b.StaticIP, DNSDomain: DNSDomain, DNSServerIP: DNSServerIP, CoreDNSImage: CoreDNSImage,
		KubeProxyImage: KubeProxyImageRepo + ":" + b.Config.KubernetesVersion}
	entries, err := addonFiles.ReadDir("addons")
	if err != nil {
		return nil, fmt.Errorf("read kubeha's add-ons: %w", err)
	}
	out := map[string]string{}
	for _, e := range entries {
		text, err := addonFiles.ReadFile("addons/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("read add-on %s: %w", e.Name(), err)
		}
		t, err := template.New(e.Name()).Option("missingkey=error").Parse(string(text))
		if err != nil {
			return nil, fmt.Errorf("parse add-on %s: %w", e.Name(), err)
		}
		var sb strings.Builder
		if err := t.Execute(&sb, v); err != nil {
			return nil, fmt.Errorf("render add-on %s: %w", e.Name(), err)
		}
		out[e.Name()] = sb.String()
	}
	for name, content := range b.UserAddons {
		out[path.Join(UserAddonDir, name)] = content
	}
	return out, nil
}

// ArchiveAddons is the kubeha-addons metadata value: the add-on files as a
// gzipped tar, base64-encoded. The same files always give the same value
// (sorted, no times), so a value that did not change is no change.
func ArchiveAddons(files map[string]string) (string, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	for _, n := range names {
		for d := path.Dir(n); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o755, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
				return "", fmt.Errorf("archive the add-ons: %w", err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return "", fmt.Errorf("archive add-on %s: %w", n, err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			return "", fmt.Errorf("archive add-on %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("archive the add-ons: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("archive the add-ons: %w", err)
	}
	value := base64.StdEncoding.EncodeToString(buf.Bytes())
	if len(value) > MaxAddonsValue {
		return "", fmt.Errorf("the add-ons take %d KiB in instance metadata, more than GCE's %d KiB for one value: make the files of spec.addons.dir smaller", len(value)>>10, MaxAddonsValue>>10)
	}
	return value, nil
}

// ReadUserAddons reads the manifests of spec.addons.dir (resolved as dir):
// every *.yaml, *.yml and *.json file, in subdirectories too, by its path
// in dir. "" reads nothing.
func ReadUserAddons(dir string) (map[string]string, error) {
	if dir == "" {
		return nil, nil
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("spec.addons.dir %s is not a directory: create it with the add-ons' manifests, or remove spec.addons.dir", dir)
	}
	out := map[string]string{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read spec.addons.dir: %w", err)
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read add-on %s: %w", p, err)
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	return out, err
}

// AddonCheckIntervalSec is kube-env's ADDON_CHECK_INTERVAL_SEC for the
// add-on manager's interval d (0: DefaultAddonCheckInterval).
func AddonCheckIntervalSec(d time.Duration) string {
	return strconv.Itoa(int(cmp.Or(d, DefaultAddonCheckInterval) / time.Second))
}

// AddonsDigest is what a master's add-ons are made of, as Config.Addons
// records it: kubeha's add-on templates, the user's files and the add-on
// manager's interval. The same inputs give the same digest.
func AddonsDigest(user map[string]string, interval time.Duration) string {
	h := sha256.New()
	entries, _ := addonFiles.ReadDir("addons")
	for _, e := range entries {
		text, _ := addonFiles.ReadFile("addons/" + e.Name())
		fmt.Fprintf(h, "kubeha/%s %d\n%s", e.Name(), len(text), text)
	}
	names := make([]string, 0, len(user))
	for n := range user {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "user/%s %d\n%s", n, len(user[n]), user[n])
	}
	fmt.Fprintf(h, "interval %s\n", AddonCheckIntervalSec(interval))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// SetKubeEnv returns kube-env with the value of key replaced (or added).
func SetKubeEnv(env, key, value string) string {
	line := fmt.Sprintf("%s: '%s'", key, strings.ReplaceAll(value, "'", ""))
	lines := strings.Split(strings.TrimSuffix(env, "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, key+": ") {
			lines[i] = line
			return strings.Join(lines, "\n") + "\n"
		}
	}
	return strings.Join(append(lines, line), "\n") + "\n"
}

// KubeEnvValue returns the value of key in kube-env, or "".
func KubeEnvValue(env, key string) string {
	for _, l := range strings.Split(env, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}
