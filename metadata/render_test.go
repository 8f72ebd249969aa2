package metadata

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite metadata/testdata golden files")

// fixtureBoot has fixed stand-ins for certificates and keys, so the
// rendering is byte-for-byte reproducible (real keys are random).
func fixtureBoot() Boot {
	pem := func(what string) string {
		return "-----BEGIN " + what + "-----\nFIXTURE+" + strings.ReplaceAll(strings.ToLower(what), " ", "/") + "==\n-----END " + what + "-----\n"
	}
	return Boot{
		Name: "prod-master-abc", InternalIP: "10.0.0.7", StaticIP: "203.0.113.10",
		InitialCluster: "prod-master=https://10.0.0.2:2380,prod-master-abc=https://10.0.0.7:2380", ClusterState: StateExisting,
		Config: Config{MachineType: "n1-standard-2", Image: "projects/cos-cloud/global/images/family/cos-stable", DiskSizeGb: 20,
			QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MultiZone: true, MaxLearners: 6},
		TLS: &TLS{CA: pem("CERTIFICATE"), PeerCert: pem("CERTIFICATE"), PeerKey: pem("PRIVATE KEY"), ServerCert: pem("CERTIFICATE"),
			ServerKey: pem("PRIVATE KEY"), ClusterCA: pem("CERTIFICATE"), APIServerCert: pem("CERTIFICATE"), APIServerKey: pem("PRIVATE KEY"),
			APIServerEtcdClientCert: pem("CERTIFICATE"), APIServerEtcdClientKey: pem("PRIVATE KEY")},
	}
}

func TestRenderGolden(t *testing.T) {
	items, err := Render(fixtureBoot())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key)
		path := filepath.Join("testdata", it.Key+".golden")
		if *update {
			if err := os.WriteFile(path, []byte(it.Value), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./metadata -update)", err)
		}
		if it.Value != string(want) {
			t.Errorf("%s differs from %s:\n%s", it.Key, path, it.Value)
		}
	}
	if strings.Join(keys, ",") != "kube-env,kubeha-config,kubeha-etcd,kubeha-tls,startup-script" {
		t.Errorf("keys %v", keys)
	}
	etcd, err := ParseEtcd(items[2].Value)
	if err != nil || etcd.PeerURL != "https://10.0.0.7:2380" || etcd.ClientURL != "https://10.0.0.7:2379" {
		t.Errorf("kubeha-etcd: %+v %v", etcd, err)
	}
	b := fixtureBoot()
	b.TLS = nil
	if _, err := Render(b); err == nil {
		t.Error("rendered a master without certificates")
	}
}

func TestStartupScriptShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed, so the startup script is not linted (apt-get install shellcheck; make test installs it when it can)")
	}
	cmd := exec.Command(sc, "--shell=bash", "-")
	cmd.Stdin = strings.NewReader(StartupScript)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}

// TestStartupScriptRuns sources the real startup script with the metadata
// server stubbed and checks what it writes: every certificate byte for byte
// with mode 0600, and etcd and apiserver manifests with the seed's flags.
func TestStartupScriptRuns(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	dir := t.TempDir()
	b := fixtureBoot()
	items, err := Render(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if err := os.WriteFile(filepath.Join(dir, it.Key), []byte(it.Value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script := `set -e
source ./startup-script
metadata() { cat "$MD/$1"; }
load_kube_env
write_certificates
mount_data_disk
write_etcd_manifest
write_apiserver_manifest`
	cmd := exec.Command(bash, "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MD="+dir, "PKI_DIR="+dir+"/pki", "MANIFESTS="+dir+"/manifests",
		"DATA_DISK="+dir+"/no-disk", "DATA_MOUNT="+dir+"/mnt", "BOOT_DISK_DATA_DIR="+dir+"/data")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("startup script: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data")); err != nil || !fi.IsDir() {
		t.Errorf("a master without master-pd keeps etcd's data on the boot disk: %v", err)
	}
	for file, want := range map[string]string{"etcd-ca.crt": b.TLS.CA, "etcd-peer.key": b.TLS.PeerKey, "etcd-server.crt": b.TLS.ServerCert,
		"apiserver.crt": b.TLS.APIServerCert, "apiserver-etcd-client.key": b.TLS.APIServerEtcdClientKey, "ca.crt": b.TLS.ClusterCA} {
		got, err := os.ReadFile(filepath.Join(dir, "pki", file))
		if err != nil || strings.TrimSpace(string(got)) != strings.TrimSpace(want) {
			t.Errorf("%s: %v\n got %q\nwant %q", file, err, got, want)
		}
		fi, _ := os.Stat(filepath.Join(dir, "pki", file))
		if fi != nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", file, fi.Mode().Perm())
		}
	}
	etcd, _ := os.ReadFile(filepath.Join(dir, "manifests", "etcd.yaml"))
	api, _ := os.ReadFile(filepath.Join(dir, "manifests", "kube-apiserver.yaml"))
	for _, want := range []string{"--name=prod-master-abc", "--initial-cluster-state=existing", "--initial-cluster=" + b.InitialCluster,
		"--listen-peer-urls=https://10.0.0.7:2380", "--client-cert-auth=true", "--peer-client-cert-auth=true", "--max-learners=6"} {
		if !strings.Contains(string(etcd), want) {
			t.Errorf("etcd manifest lacks %s:\n%s", want, etcd)
		}
	}
	for _, want := range []string{"--etcd-quorum-read=true", "--advertise-address=203.0.113.10", "--secure-port=443", "--etcd-certfile="} {
		if !strings.Contains(string(api), want) {
			t.Errorf("apiserver manifest lacks %s:\n%s", want, api)
		}
	}
}
