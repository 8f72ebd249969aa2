package kubelet

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// BinariesEnv names a directory holding the kubernetes-<version>
// directories make kube-binaries builds, other than the checkout's
// .kubeha/bin.
const BinariesEnv = "KUBEHA_KUBE_BINARIES"

// Binaries is a directory that make kube-binaries filled for one
// Kubernetes release: etcd, and kube-apiserver, kube-controller-manager
// and kube-scheduler, with the versions they were built at in its VERSIONS
// file.
type Binaries struct {
	Dir        string
	Kubernetes string // v1.37.2
	Etcd       string // v3.7.3
	// Healthcheck is the tag of kOps' kube-apiserver-healthcheck image
	// whose stand-in was built (1.34.0).
	Healthcheck string
	// AddonManager is the tag of kube-up's add-on manager image, run here
	// as its script (kube-addons-main.sh, kube-addons.sh) with the kubectl
	// of the release.
	AddonManager string
}

// AddonManagerScript is the add-on manager image's entrypoint.
const AddonManagerScript = "kube-addons-main.sh"

// ErrNoBinaries says the control-plane binaries are not built.
var ErrNoBinaries = errors.New("the Kubernetes binaries are not built: run make kube-binaries")

// Releases are the built binaries of several Kubernetes releases, the
// newest first: a master runs those of the version its kube-env names.
type Releases []*Binaries

// Of returns the binaries of a Kubernetes version, or an error naming
// the versions built.
func (rs Releases) Of(version string) (*Binaries, error) {
	var built []string
	for _, b := range rs {
		if b.Kubernetes == version {
			return b, nil
		}
		built = append(built, b.Kubernetes)
	}
	return nil, fmt.Errorf("%w: the emulator has no binaries of Kubernetes %s (it has %s)", ErrNoBinaries, version, strings.Join(built, ", "))
}

// Newest is the newest release built.
func (rs Releases) Newest() *Binaries { return rs[0] }

// Words says what the emulator's masters can run.
func (rs Releases) Words() string {
	var out []string
	for _, b := range rs {
		out = append(out, fmt.Sprintf("Kubernetes %s with etcd %s from %s", b.Kubernetes, b.Etcd, b.Dir))
	}
	return strings.Join(out, "; ")
}

// FindReleases looks for the binaries of each Kubernetes version (the
// newest first): in KUBEHA_KUBE_BINARIES/kubernetes-<version> when set,
// else in .kubeha/bin/kubernetes-<version> of the checkout that holds dir
// (or one of its parents). Versions not built are left out; none built is
// ErrNoBinaries.
func FindReleases(dir string, versions ...string) (Releases, error) {
	var out Releases
	var firstErr error
	for _, v := range versions {
		b, err := FindBinaries(dir, v)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, firstErr
	}
	return out, nil
}

// FindBinaries looks for the binaries of one Kubernetes version, as
// FindReleases does.
func FindBinaries(dir, version string) (*Binaries, error) {
	name := "kubernetes-" + version
	if d := os.Getenv(BinariesEnv); d != "" {
		return LoadBinaries(filepath.Join(d, name))
	}
	for d := dir; ; d = filepath.Dir(d) {
		candidate := filepath.Join(d, ".kubeha", "bin", name)
		if _, err := os.Stat(filepath.Join(candidate, "VERSIONS")); err == nil {
			return LoadBinaries(candidate)
		}
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil || filepath.Dir(d) == d {
			return nil, fmt.Errorf("%w (looked in %s)", ErrNoBinaries, candidate)
		}
	}
}

// LoadBinaries reads a binaries directory.
func LoadBinaries(dir string) (*Binaries, error) {
	f, err := os.Open(filepath.Join(dir, "VERSIONS"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s has no VERSIONS file)", ErrNoBinaries, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read the binaries' versions: %w", err)
	}
	defer f.Close()
	b := &Binaries{Dir: dir}
	sc := bufio.NewScanner(f)
	if sc.Scan() {
		// "kubernetes v1.37.2 etcd v3.7.3 kube-apiserver-healthcheck 1.34.0"
		fields := strings.Fields(sc.Text())
		for i := 0; i+1 < len(fields); i += 2 {
			switch fields[i] {
			case "kubernetes":
				b.Kubernetes = fields[i+1]
			case "etcd":
				b.Etcd = fields[i+1]
			case "kube-apiserver-healthcheck":
				b.Healthcheck = fields[i+1]
			case "kube-addon-manager":
				b.AddonManager = fields[i+1]
			}
		}
	}
	if b.Kubernetes == "" || b.Etcd == "" || b.Healthcheck == "" || b.AddonManager == "" {
		return nil, fmt.Errorf("%s/VERSIONS does not say which Kubernetes, etcd, kube-apiserver-healthcheck and add-on manager were built: run make kube-binaries again", dir)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-apiserver-healthcheck",
		"kubectl", "kubemark", "kube-addons.sh", AddonManagerScript} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("%w (%s lacks %s)", ErrNoBinaries, dir, name)
		}
	}
	return b, nil
}

// Resolve returns the binary of a container image, refusing an image
// whose version is not the one built: on a VM it would be another binary.
func (b *Binaries) Resolve(image string) (string, error) {
	repo, tag, _ := strings.Cut(image, ":")
	name := repo[strings.LastIndex(repo, "/")+1:]
	want := ""
	switch name {
	case "etcd":
		want = strings.TrimPrefix(b.Etcd, "v") + "-0"
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
		want = b.Kubernetes
	case "kube-apiserver-healthcheck":
		want = b.Healthcheck
	case "kube-addon-manager":
		want, name = b.AddonManager, AddonManagerScript
	default:
		return "", fmt.Errorf("image %s: the emulator runs only etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-apiserver-healthcheck and kube-addon-manager", image)
	}
	if tag != want {
		return "", fmt.Errorf("image %s: the emulator's binaries are Kubernetes %s, etcd %s, kube-apiserver-healthcheck %s and kube-addon-manager %s (%s): build them with make kube-binaries", image, b.Kubernetes, b.Etcd, b.Healthcheck, b.AddonManager, b.Dir)
	}
	return filepath.Join(b.Dir, name), nil
}
