package kubelet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRelease lays out what make kube-binaries leaves for one release.
func fakeRelease(t *testing.T, root, k8s, etcd string) {
	t.Helper()
	dir := filepath.Join(root, "kubernetes-"+k8s)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	versions := "kubernetes " + k8s + " etcd " + etcd + " etcdutl " + etcd + " kube-apiserver-healthcheck 1.34.0 kube-addon-manager v9.1.8 commands x"
	if err := os.WriteFile(filepath.Join(dir, "VERSIONS"), []byte(versions+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-apiserver-healthcheck", "kubectl", "kubemark", "kube-addons.sh", AddonManagerScript} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReleases(t *testing.T) {
	root := t.TempDir()
	fakeRelease(t, root, "v1.37.2", "v3.7.3")
	fakeRelease(t, root, "v1.36.3", "v3.6.8")
	t.Setenv(BinariesEnv, root)

	rs, err := FindReleases(t.TempDir(), "v1.37.2", "v1.36.3", "v1.35.4")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs.Newest().Kubernetes != "v1.37.2" {
		t.Fatalf("found %+v, want v1.37.2 and v1.36.3 (v1.35.4 is not built)", rs)
	}
	old, err := rs.Of("v1.36.3")
	if err != nil || old.Etcd != "v3.6.8" {
		t.Fatalf("Of(v1.36.3) = %+v, %v", old, err)
	}
	// A master of v1.36.3 resolves its own release's images, not the other's.
	if bin, err := old.Resolve("registry.k8s.io/etcd:3.6.8-0"); err != nil || !strings.HasSuffix(bin, "kubernetes-v1.36.3/etcd") {
		t.Errorf("etcd 3.6.8 of v1.36.3: %s, %v", bin, err)
	}
	if _, err := old.Resolve("registry.k8s.io/kube-apiserver:v1.37.2"); err == nil {
		t.Error("the binaries of v1.36.3 resolved kube-apiserver v1.37.2")
	}
	_, err = rs.Of("v1.35.4")
	if !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "v1.37.2, v1.36.3") {
		t.Errorf("Of(v1.35.4): %v, want ErrNoBinaries naming the releases built", err)
	}
	if _, err := FindReleases(t.TempDir(), "v1.35.4"); !errors.Is(err, ErrNoBinaries) {
		t.Errorf("no release built: %v, want ErrNoBinaries", err)
	}
}
