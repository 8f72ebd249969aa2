package spec

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Release is a Kubernetes release kubeha deploys, with the etcd it goes
// with: the masters' static pods run these versions.
type Release struct {
	Kubernetes string // e.g. v1.37.2
	Etcd       string // e.g. v3.7.3
}

// Releases are the Kubernetes releases kubeha supports, the newest first.
// Every one of them is what the emulator builds with make kube-binaries
// and runs, so a flag a release refuses fails a test.
var Releases = []Release{
	{Kubernetes: "v1.37.2", Etcd: "v3.7.3"},
}

// DefaultKubernetesVersion is the release a spec gets when it names none.
var DefaultKubernetesVersion = Releases[0].Kubernetes

var versionRe = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

// ReleaseOf returns the supported release of a Kubernetes version.
func ReleaseOf(version string) (Release, bool) {
	i := slices.IndexFunc(Releases, func(r Release) bool { return r.Kubernetes == version })
	if i < 0 {
		return Release{}, false
	}
	return Releases[i], true
}

// SupportedVersions lists the supported Kubernetes versions.
func SupportedVersions() []string {
	var out []string
	for _, r := range Releases {
		out = append(out, r.Kubernetes)
	}
	sort.Strings(out)
	return out
}

func kubernetesProblems(k *Kubernetes) []Problem {
	v := k.Version
	switch {
	case !versionRe.MatchString(v):
		return []Problem{{Field: "spec.kubernetes.version", Message: fmt.Sprintf("%q is not a Kubernetes release version: write it like %s", v, DefaultKubernetesVersion)}}
	case func() bool { _, ok := ReleaseOf(v); return !ok }():
		return []Problem{{Field: "spec.kubernetes.version", Message: fmt.Sprintf("%s is not a release kubeha deploys: use one of %s", v, strings.Join(SupportedVersions(), ", "))}}
	}
	return nil
}
