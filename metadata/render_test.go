package metadata

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
			QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MultiZone: true, MaxLearners: 6, KubernetesVersion: "v1.37.2"},
		EtcdVersion: "v3.7.3",
		TLS: &TLS{CA: pem("CERTIFICATE"), PeerCert: pem("CERTIFICATE"), PeerKey: pem("PRIVATE KEY"), ServerCert: pem("CERTIFICATE"),
			ServerKey: pem("PRIVATE KEY"), ClusterCA: pem("CERTIFICATE"), APIServerCert: pem("CERTIFICATE"), APIServerKey: pem("PRIVATE KEY"),
			APIServerEtcdClientCert: pem("CERTIFICATE"), APIServerEtcdClientKey: pem("PRIVATE KEY"),
			ServiceAccountKey: pem("PRIVATE KEY"), ServiceAccountPub: pem("PUBLIC KEY"), ControllerManagerCert: pem("CERTIFICATE"),
			ControllerManagerKey: pem("PRIVATE KEY"), SchedulerCert: pem("CERTIFICATE"), SchedulerKey: pem("PRIVATE KEY")},
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

// TestStartupScriptRuns runs the real startup script in a directory that
// stands for the VM's root, with the metadata server stubbed, and checks
// what it writes: every certificate byte for byte with mode 0600, the
// kubeconfigs, the four static pods with current flags, the host firewall
// opened for exactly the master's ports; and that a second run changes
// nothing.
func TestStartupScriptRuns(t *testing.T) {
	root, b := runStartupScript(t, fixtureBoot())
	pki := filepath.Join(root, "etc/srv/kubernetes/pki")
	for file, want := range map[string]string{"etcd-ca.crt": b.TLS.CA, "etcd-peer.key": b.TLS.PeerKey, "etcd-server.crt": b.TLS.ServerCert,
		"apiserver.crt": b.TLS.APIServerCert, "apiserver-etcd-client.key": b.TLS.APIServerEtcdClientKey, "ca.crt": b.TLS.ClusterCA,
		"sa.key": b.TLS.ServiceAccountKey, "sa.pub": b.TLS.ServiceAccountPub, "scheduler.key": b.TLS.SchedulerKey,
		"controller-manager.crt": b.TLS.ControllerManagerCert} {
		got, err := os.ReadFile(filepath.Join(pki, file))
		if err != nil || strings.TrimSpace(string(got)) != strings.TrimSpace(want) {
			t.Errorf("%s: %v\n got %q\nwant %q", file, err, got, want)
		}
		fi, _ := os.Stat(filepath.Join(pki, file))
		if fi != nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", file, fi.Mode().Perm())
		}
	}
	read := func(rel string) string {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	manifests := "etc/kubernetes/manifests/"
	for file, wants := range map[string][]string{
		"etcd.yaml": {"image: registry.k8s.io/etcd:3.7.3-0", "--name=prod-master-abc", "--initial-cluster-state=existing", "--initial-cluster=" + b.InitialCluster,
			"--listen-peer-urls=https://10.0.0.7:2380", "--client-cert-auth=true", "--peer-client-cert-auth=true", "--max-learners=6",
			"--data-dir=" + root + "/var/etcd/data"},
		"kube-apiserver.yaml": {"image: registry.k8s.io/kube-apiserver:v1.37.2", "--advertise-address=203.0.113.10", "--secure-port=443",
			"--etcd-certfile=", "--service-account-issuer=", "--service-account-signing-key-file=" + pki + "/sa.key", "--authorization-mode=Node,RBAC",
			"--authentication-config="},
		"kube-controller-manager.yaml": {"image: registry.k8s.io/kube-controller-manager:v1.37.2", "--leader-elect=true", "--service-account-private-key-file="},
		"kube-scheduler.yaml":          {"image: registry.k8s.io/kube-scheduler:v1.37.2", "--leader-elect=true", "--kubeconfig="},
	} {
		got := read(manifests + file)
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks %s:\n%s", file, want, got)
			}
		}
		if strings.Contains(got, "quorum-read") {
			t.Errorf("%s has a flag current releases refuse:\n%s", file, got)
		}
	}
	kc := read("etc/srv/kubernetes/scheduler.kubeconfig")
	if !strings.Contains(kc, "server: https://10.0.0.7:443") || !strings.Contains(kc, "client-key-data: ") {
		t.Errorf("scheduler kubeconfig:\n%s", kc)
	}
	if got := read("calls"); got != "iptables -w -A INPUT -p tcp --dport 443 -j ACCEPT\niptables -w -A INPUT -p tcp --dport 2379 -j ACCEPT\n"+
		"iptables -w -A INPUT -p tcp --dport 2380 -j ACCEPT\niptables -w -A INPUT -p tcp --dport 8080 -j ACCEPT\n" {
		t.Errorf("host firewall calls:\n%s", got)
	}
}

// runStartupScript renders b's metadata, serves it as GCE's metadata
// server does (the Metadata-Flavor header required), and runs the real
// startup script with bash twice, in a root directory of its own, with
// stand-ins for iptables (which records its calls and keeps the rules)
// and systemctl. The second run must change no file.
func runStartupScript(t *testing.T, b Boot) (string, Boot) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	items, err := Render(b)
	if err != nil {
		t.Fatal(err)
	}
	md := map[string]string{}
	for _, it := range items {
		md[it.Key] = it.Value
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := md[strings.TrimPrefix(r.URL.Path, "/computeMetadata/v1/instance/attributes/")]
		if r.Header.Get("Metadata-Flavor") != "Google" || !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		io.WriteString(w, v)
	}))
	defer srv.Close()
	root := t.TempDir()
	bin := filepath.Join(root, "stand-ins")
	os.MkdirAll(bin, 0o755)
	standIns := map[string]string{
		"iptables": `rules="$KUBEHA_ROOT/iptables-rules"
case "$2" in
-C) shift 2; grep -qxF "$*" "$rules" 2>/dev/null ;;
-A) echo "iptables $*" >>"$KUBEHA_ROOT/calls"; shift 2; echo "$*" >>"$rules" ;;
esac`,
		"systemctl": `exit 1`,
	}
	for name, body := range standIns {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(root, "startup-script")
	if err := os.WriteFile(script, []byte(md[KeyStartupScript]), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() {
		cmd := exec.Command(bash, script)
		cmd.Env = append(os.Environ(), "KUBEHA_ROOT="+root, "GCE_METADATA_HOST="+strings.TrimPrefix(srv.URL, "http://"), "PATH="+bin+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("startup script: %v\n%s", err, out)
		}
	}
	run()
	before := snapshotTree(t, root)
	run()
	if after := snapshotTree(t, root); after != before {
		t.Errorf("a second run changed the machine:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	return root, b
}

// snapshotTree lists every file under root with its size, mode and
// modification time.
func snapshotTree(t *testing.T, root string) string {
	t.Helper()
	var sb strings.Builder
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&sb, "%s %d %v %s\n", strings.TrimPrefix(path, root), fi.Size(), fi.Mode(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	return sb.String()
}
