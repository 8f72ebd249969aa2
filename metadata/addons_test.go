package metadata

import (
	"archive/tar"
	"compress/gzip"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// unpackAddons lists an add-ons archive as "== NAME" headers, each followed
// by the file.
func unpackAddons(t *testing.T, value string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var sb strings.Builder
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return sb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		data, _ := io.ReadAll(tr)
		sb.WriteString("== " + h.Name + "\n" + string(data))
	}
}

func TestAddons(t *testing.T) {
	b := fixtureBoot()
	b.UserAddons = map[string]string{"team/quota.yaml": "kind: ResourceQuota\n"}
	files, err := Addons(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node-bootstrap.yaml", "cluster-info.yaml", "coredns.yaml", "kube-proxy.yaml", "user/team/quota.yaml"} {
		if files[name] == "" {
			t.Errorf("no add-on %s", name)
		}
	}
	// Every kubeha add-on is YAML whose every object carries the add-on
	// manager's mode label: kube-addons.sh acts on nothing else.
	for name, text := range files {
		if strings.HasPrefix(name, UserAddonDir+"/") {
			continue
		}
		for i, doc := range strings.Split(text, "\n---\n") {
			var obj struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s document %d: %v", name, i, err)
			}
			if mode := obj.Metadata.Labels["addonmanager.kubernetes.io/mode"]; mode != "Reconcile" && mode != "EnsureExists" {
				t.Errorf("%s: %s without addonmanager.kubernetes.io/mode (%q)", name, obj.Kind, mode)
			}
		}
	}
	if !strings.Contains(files["cluster-info.yaml"], "server: https://203.0.113.10") || !strings.Contains(files["coredns.yaml"], "clusterIP: 10.0.0.10") ||
		!strings.Contains(files["kube-proxy.yaml"], "image: registry.k8s.io/kube-proxy:v1.37.2") || !strings.Contains(files["node-bootstrap.yaml"], BootstrapGroup) {
		t.Errorf("add-ons not filled in:\n%s", files["cluster-info.yaml"])
	}
	a, err := ArchiveAddons(files)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := ArchiveAddons(files)
	if a != again {
		t.Error("the same add-ons archived twice differ: every renewal would look like a change")
	}
	if got := unpackAddons(t, a); !strings.Contains(got, "== user/team/quota.yaml\nkind: ResourceQuota\n") {
		t.Errorf("archive:\n%s", got)
	}
	big := map[string]string{"big.yaml": randomText(400 << 10)}
	if _, err := ArchiveAddons(big); err == nil || !strings.Contains(err.Error(), "spec.addons.dir") {
		t.Errorf("an archive past GCE's 256 KiB: %v", err)
	}
}

func randomText(n int) string {
	var sb strings.Builder
	x := uint32(1)
	for sb.Len() < n {
		x = x*1664525 + 1013904223
		sb.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[x>>26%36])
	}
	return sb.String()
}

func TestReadUserAddons(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "team"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "team", "b.json"), []byte("b"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not an add-on"), 0o644)
	got, err := ReadUserAddons(dir)
	if err != nil || len(got) != 2 || got["a.yaml"] != "a" || got["team/b.json"] != "b" {
		t.Errorf("ReadUserAddons = %v, %v", got, err)
	}
	if _, err := ReadUserAddons(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "spec.addons.dir") {
		t.Errorf("a missing directory: %v", err)
	}
	if got, err := ReadUserAddons(""); err != nil || got != nil {
		t.Errorf("no directory: %v %v", got, err)
	}
}
