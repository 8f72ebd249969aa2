package spec

import (
	"cmp"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Release is a Kubernetes release kubeha deploys, with the etcd it goes
// with: the masters' static pods run these versions.
type Release struct {
	Kubernetes string // e.g. v1.37.2
	Etcd       string // e.g. v3.7.3
	// KubeletSHA512 is the digest of the release's linux/amd64 kubelet as
	// the release publishes it; empty when kubeha does not carry it (then
	// spec.kubernetes.kubeletSHA512 must give it).
	KubeletSHA512 string
}

// DefaultReleaseURL is where Kubernetes releases are published.
const DefaultReleaseURL = "https://dl.k8s.io/release"

// KubeletURL is where a master downloads the kubelet of a version.
func KubeletURL(releaseURL, version string) string {
	return strings.TrimRight(releaseURL, "/") + "/" + version + "/bin/linux/amd64/kubelet"
}

// Downloads are where masters download their kubelet and its digest by
// version, when the spec does not say: kubeha's emulator serves its own.
type Downloads struct {
	ReleaseURL string
	// KubeletSHA512 are digests of the kubelets at ReleaseURL, known
	// without asking it (an emulator in the same process).
	KubeletSHA512 map[string]string
	// Fetched are digests read from the release URL the masters download
	// from (its kubelet.sha512), by version: used when neither the spec
	// nor kubeha carries one.
	Fetched map[string]string
}

// releaseBase is the release URL a master downloads from.
func (c *Cluster) releaseBase(d Downloads) string {
	switch {
	case c.Spec.Kubernetes.ReleaseURL != "":
		return c.Spec.Kubernetes.ReleaseURL
	case d.ReleaseURL != "":
		return d.ReleaseURL
	}
	return DefaultReleaseURL
}

// KubeletDigestSource says where the digest of a version's kubelet comes
// from when it is known without fetching ("spec.kubernetes.kubeletSHA512",
// "kubeha", "the emulator"), or "" when it must be fetched from the
// release's kubelet.sha512, whose URL it returns.
func (c *Cluster) KubeletDigestSource(version string, d Downloads) (source, sha512URL string) {
	k := c.Spec.Kubernetes
	switch {
	case version == k.Version && k.KubeletSHA512 != "":
		return "spec.kubernetes.kubeletSHA512", ""
	case d.KubeletSHA512[version] != "" && k.ReleaseURL == "":
		return "the emulator", ""
	}
	if r, ok := ReleaseOf(version); ok && r.KubeletSHA512 != "" {
		return "kubeha", ""
	}
	return "", KubeletURL(c.releaseBase(d), version) + ".sha512"
}

// Kubelet returns the URL and digest of the kubelet a master of a
// Kubernetes version downloads: what the spec says (for its own version),
// else what d says, else the release's published digest kubeha carries,
// else the one fetched from the release (d.Fetched). Without a digest a
// master would run an unverified binary, so that is an error naming the
// field to set.
func (c *Cluster) Kubelet(version string, d Downloads) (kubeletURL, sha512 string, err error) {
	base := c.releaseBase(d)
	k := c.Spec.Kubernetes
	if version == k.Version && k.KubeletSHA512 != "" {
		return KubeletURL(base, version), k.KubeletSHA512, nil
	}
	if sum := d.KubeletSHA512[version]; sum != "" && k.ReleaseURL == "" {
		return KubeletURL(base, version), sum, nil
	}
	if r, ok := ReleaseOf(version); ok && r.KubeletSHA512 != "" {
		return KubeletURL(base, version), r.KubeletSHA512, nil
	}
	if sum := d.Fetched[version]; sum != "" {
		return KubeletURL(base, version), sum, nil
	}
	return "", "", fmt.Errorf("spec.kubernetes.kubeletSHA512: kubeha carries no digest of the kubelet of Kubernetes %s: set it to the content of %s.sha512 (a master checks its download against it)",
		version, KubeletURL(base, version))
}

// Releases are the Kubernetes releases kubeha supports, the newest first.
// Every one of them is what the emulator builds with make kube-binaries
// and runs, so a flag a release refuses fails a test.
var Releases = []Release{
	{Kubernetes: "v1.37.2", Etcd: "v3.7.3"},
	// The release before the newest, so that an upgrade can be run: the
	// etcd its kubeadm deploys (constants.DefaultEtcdVersion).
	{Kubernetes: "v1.36.3", Etcd: "v3.6.8"},
}

// DefaultKubernetesVersion is the release a spec gets when it names none.
var DefaultKubernetesVersion = Releases[0].Kubernetes

var (
	versionRe = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)
	sha512Re  = regexp.MustCompile(`^[0-9a-f]{128}$`)
)

// ReleaseOf returns the supported release of a Kubernetes version.
func ReleaseOf(version string) (Release, bool) {
	i := slices.IndexFunc(Releases, func(r Release) bool { return r.Kubernetes == version })
	if i < 0 {
		return Release{}, false
	}
	return Releases[i], true
}

// SupportedVersions lists the supported Kubernetes versions, the oldest
// first.
func SupportedVersions() []string {
	var out []string
	for _, r := range Releases {
		out = append(out, r.Kubernetes)
	}
	sort.Slice(out, func(i, j int) bool { return CompareVersions(out[i], out[j]) < 0 })
	return out
}

// Minor is a version's major and minor numbers: v1.37.2 is {1, 37}.
type Minor struct{ Major, Minor int }

func (m Minor) String() string { return fmt.Sprintf("%d.%d", m.Major, m.Minor) }

// Next is the minor version after m.
func (m Minor) Next() Minor { return Minor{m.Major, m.Minor + 1} }

// Less orders minor versions.
func (m Minor) Less(o Minor) bool {
	return m.Major < o.Major || m.Major == o.Major && m.Minor < o.Minor
}

// MinorOf returns the minor version of a version such as v1.37.2 or
// 3.7.3-0; false when it is not one.
func MinorOf(version string) (Minor, bool) {
	n, ok := versionNumbers(version)
	return Minor{n[0], n[1]}, ok
}

func versionNumbers(version string) ([3]int, bool) {
	var n [3]int
	v := strings.TrimPrefix(version, "v")
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return n, false
	}
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return n, false
		}
		n[i] = x
	}
	return n, true
}

// CompareVersions orders two versions such as v1.36.3 and v1.37.2 (-1, 0,
// +1); a version that does not parse sorts first.
func CompareVersions(a, b string) int {
	na, oka := versionNumbers(a)
	nb, okb := versionNumbers(b)
	if !oka || !okb {
		return cmp.Compare(boolInt(oka), boolInt(okb))
	}
	for i := range na {
		if c := cmp.Compare(na[i], nb[i]); c != 0 {
			return c
		}
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ReleaseOfMinor returns the newest supported release of a minor version.
func ReleaseOfMinor(m Minor) (Release, bool) {
	var best Release
	for _, r := range Releases {
		if rm, _ := MinorOf(r.Kubernetes); rm == m && (best.Kubernetes == "" || CompareVersions(r.Kubernetes, best.Kubernetes) > 0) {
			best = r
		}
	}
	return best, best.Kubernetes != ""
}

func kubernetesProblems(k *Kubernetes) []Problem {
	var out []Problem
	if k.ReleaseURL != "" {
		if u, err := url.Parse(k.ReleaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			out = append(out, Problem{Field: "spec.kubernetes.releaseURL", Message: fmt.Sprintf("%q is not an http(s) URL: write it like %s", k.ReleaseURL, DefaultReleaseURL)})
		}
	}
	if k.KubeletSHA512 != "" && !sha512Re.MatchString(k.KubeletSHA512) {
		out = append(out, Problem{Field: "spec.kubernetes.kubeletSHA512", Message: "is not a SHA-512 digest: 128 lowercase hexadecimal digits, as in the release's kubelet.sha512 file"})
	}
	return append(out, versionProblems(k)...)
}

func versionProblems(k *Kubernetes) []Problem {
	v := k.Version
	switch {
	case !versionRe.MatchString(v):
		return []Problem{{Field: "spec.kubernetes.version", Message: fmt.Sprintf("%q is not a Kubernetes release version: write it like %s", v, DefaultKubernetesVersion)}}
	case func() bool { _, ok := ReleaseOf(v); return !ok }():
		return []Problem{{Field: "spec.kubernetes.version", Message: fmt.Sprintf("%s is not a release kubeha deploys: use one of %s", v, strings.Join(SupportedVersions(), ", "))}}
	}
	return nil
}
