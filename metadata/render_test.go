package metadata

import (
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
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

	"github.com/kubeha/kubeha/internal/golden"
)

// fixtureBoot has fixed stand-ins for certificates and keys, so the
// rendering is byte-for-byte reproducible (real keys are random).
func fixtureBoot() Boot {
	pem := func(what string) string {
		return "-----BEGIN " + what + "-----\nFIXTURE+" + strings.ReplaceAll(strings.ToLower(what), " ", "/") + "==\n-----END " + what + "-----\n"
	}
	return Boot{
		Cluster: "prod", Name: "prod-master-abc", InternalIP: "10.0.0.7", StaticIP: "203.0.113.10",
		InitialCluster: "prod-master=https://10.0.0.2:2380,prod-master-abc=https://10.0.0.7:2380", ClusterState: StateExisting,
		Config: Config{MachineType: "n1-standard-2", Image: "projects/cos-cloud/global/images/family/cos-stable", DiskSizeGb: 20,
			QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MultiZone: true, MaxLearners: 6, KubernetesVersion: "v1.37.2"},
		EtcdVersion: "v3.7.3", KubeletURL: "https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet",
		KubeletSHA512: strings.Repeat("ab", 64),
		TLS: &TLS{CA: pem("CERTIFICATE"), PeerCert: pem("CERTIFICATE"), PeerKey: pem("PRIVATE KEY"), ServerCert: pem("CERTIFICATE"),
			ServerKey: pem("PRIVATE KEY"), ClusterCA: pem("CERTIFICATE"), APIServerCert: pem("CERTIFICATE"), APIServerKey: pem("PRIVATE KEY"),
			APIServerEtcdClientCert: pem("CERTIFICATE"), APIServerEtcdClientKey: pem("PRIVATE KEY"),
			ServiceAccountKey: pem("PRIVATE KEY"), ServiceAccountPub: pem("PUBLIC KEY"), ControllerManagerCert: pem("CERTIFICATE"),
			ControllerManagerKey: pem("PRIVATE KEY"), SchedulerCert: pem("CERTIFICATE"), SchedulerKey: pem("PRIVATE KEY"),
			HealthcheckCert: pem("CERTIFICATE"), HealthcheckKey: pem("PRIVATE KEY"), ClusterCAKey: pem("PRIVATE KEY"),
			KubeletCert: pem("CERTIFICATE"), KubeletKey: pem("PRIVATE KEY"), AddonManagerCert: pem("CERTIFICATE"), AddonManagerKey: pem("PRIVATE KEY")},
		Keys: "projects/p-test/secrets/prod-master-abc-keys/versions/1",
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
		if it.Key == KeyAddons {
			// The archive as the files it holds: a reviewable golden.
			golden.Check(t, filepath.Join("testdata", "addons.golden"), []byte(unpackAddons(t, it.Value)))
			continue
		}
		golden.Check(t, filepath.Join("testdata", it.Key+".golden"), []byte(it.Value))
	}
	if strings.Join(keys, ",") != "kube-env,kubeha-addons,kubeha-config,kubeha-etcd,kubeha-keys,kubeha-tls,startup-script" {
		t.Errorf("keys %v", keys)
	}
	etcd, err := ParseEtcd(items[3].Value)
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
	root, calls, b := runStartupScript(t, fixtureBoot())
	pki := filepath.Join(root, "etc/srv/kubernetes/pki")
	for file, want := range map[string]string{"etcd-ca.crt": b.TLS.CA, "etcd-peer.key": b.TLS.PeerKey, "etcd-server.crt": b.TLS.ServerCert,
		"apiserver.crt": b.TLS.APIServerCert, "apiserver-etcd-client.key": b.TLS.APIServerEtcdClientKey, "ca.crt": b.TLS.ClusterCA,
		"sa.key": b.TLS.ServiceAccountKey, "sa.pub": b.TLS.ServiceAccountPub, "scheduler.key": b.TLS.SchedulerKey,
		"controller-manager.crt": b.TLS.ControllerManagerCert, "kube-apiserver-healthcheck.key": b.TLS.HealthcheckKey,
		"ca.key": b.TLS.ClusterCAKey, "kubelet.crt": b.TLS.KubeletCert, "kubelet.key": b.TLS.KubeletKey, "addon-manager.key": b.TLS.AddonManagerKey} {
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
			"--authentication-config=", "--enable-bootstrap-token-auth=true"},
		"kube-controller-manager.yaml": {"image: registry.k8s.io/kube-controller-manager:v1.37.2", "--leader-elect=true", "--service-account-private-key-file=",
			"--cluster-signing-cert-file=" + pki + "/ca.crt", "--cluster-signing-key-file=" + pki + "/ca.key", "--controllers=*,bootstrapsigner,tokencleaner"},
		"kube-addon-manager.yaml": {"image: " + AddonManagerImage, "{name: ADDON_PATH, value: '" + root + "/etc/kubernetes/addons'}",
			"{name: KUBECTL_OPTS, value: '--kubeconfig=" + root + "/etc/srv/kubernetes/addon-manager.kubeconfig'}", "{name: TEST_ADDON_CHECK_INTERVAL_SEC, value: '60'}"},
		"kube-scheduler.yaml": {"image: registry.k8s.io/kube-scheduler:v1.37.2", "--leader-elect=true", "--kubeconfig="},
		"kube-apiserver-healthcheck.yaml": {"image: " + HealthcheckImage, "    args:\n    - --ca-cert=" + pki + "/ca.crt",
			"--client-cert=" + pki + "/kube-apiserver-healthcheck.crt", "--client-key=" + pki + "/kube-apiserver-healthcheck.key"},
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
	if got := read("etc/kubernetes/kubelet-config.yaml"); !strings.Contains(got, "registerWithTaints:\n- {key: node-role.kubernetes.io/control-plane, effect: NoSchedule}") {
		t.Errorf("the kubelet registers its Node without the control-plane taint:\n%s", got)
	}
	if got := read("home/kubernetes/bin/kubelet"); got != kubeletBytes {
		t.Errorf("installed kubelet %q, want the download", got)
	}
	for rel, want := range map[string]string{"etc/containerd/config.toml": "SystemdCgroup = true", "etc/kubernetes/kubelet-config.yaml": "staticPodPath: /etc/kubernetes/manifests",
		"etc/systemd/system/kubelet.service":            "ExecStart=/home/kubernetes/bin/kubelet --config=/etc/kubernetes/kubelet-config.yaml --kubeconfig=/etc/srv/kubernetes/kubelet.kubeconfig --hostname-override=prod-master-abc --node-labels=kubeha.io/master=prod",
		"etc/srv/kubernetes/kubelet.kubeconfig":         "name: system:node:prod-master-abc",
		"etc/srv/kubernetes/authentication-config.yaml": "- path: /api/v1/namespaces/kube-public/configmaps/cluster-info",
		"etc/kubernetes/addons/coredns.yaml":            "name: coredns",
		"etc/kubernetes/addons/cluster-info.yaml":       "server: https://203.0.113.10"} {
		if got := read(rel); !strings.Contains(got, want) {
			t.Errorf("%s lacks %q:\n%s", rel, want, got)
		}
	}
	// The first run opens the firewall for exactly the master's ports,
	// configures containerd and starts the kubelet; the second only asks
	// that the kubelet runs.
	want := "iptables -w -A INPUT -p tcp --dport 443 -j ACCEPT\niptables -w -A INPUT -p tcp --dport 2379 -j ACCEPT\n" +
		"iptables -w -A INPUT -p tcp --dport 2380 -j ACCEPT\niptables -w -A INPUT -p tcp --dport 3990 -j ACCEPT\n" +
		"systemctl daemon-reload\nsystemctl enable kubeha-addons.service\nsystemctl restart kubeha-addons.service\n" +
		"systemctl restart containerd.service\nsystemctl daemon-reload\nsystemctl enable kubelet.service\nsystemctl restart kubelet.service\n" +
		"--- second run\nsystemctl enable --now kubeha-addons.service\nsystemctl enable --now kubelet.service\n"
	if calls != want {
		t.Errorf("calls of the host's tools:\n%s\nwant:\n%s", calls, want)
	}
}

// TestStartupScriptRefusesWrongKubelet: a download whose digest is not
// the one kube-env gives stops the boot with one line, before anything
// is written or started.
func TestStartupScriptRefusesWrongKubelet(t *testing.T) {
	b := fixtureBoot()
	b.KubeletSHA512 = strings.Repeat("0", 128)
	root, calls, out, err := startupScript(t, &b)
	if err == nil {
		t.Fatalf("the boot went on with a kubelet of another digest:\n%s", out)
	}
	line := "kubeha: the kubelet downloaded from " + b.KubeletURL + " has SHA-512 " + sha512Hex(kubeletBytes) + ", not " + b.KubeletSHA512 + ": nothing started"
	if strings.TrimSpace(out) != line {
		t.Errorf("output %q\nwant the one line %q", out, line)
	}
	for _, rel := range []string{"home/kubernetes/bin/kubelet", "home/kubernetes/bin/kubelet.download", "etc/kubernetes/manifests", "etc/srv/kubernetes"} {
		if _, err := os.Stat(filepath.Join(root, rel)); err == nil {
			t.Errorf("%s exists after a refused download", rel)
		}
	}
	if calls != "" {
		t.Errorf("host tools were called:\n%s", calls)
	}
}

// TestStartupScriptRefusesWithoutKeyAccess: a VM whose service account may
// not read its keys in Secret Manager (403) stops the boot with one line
// naming the account, the version and the role to grant, and starts
// nothing; no key is left on disk.
func TestStartupScriptRefusesWithoutKeyAccess(t *testing.T) {
	b := fixtureBoot()
	b.Keys = "projects/p-test/secrets/denied-keys/versions/1"
	root, calls, out, err := startupScript(t, &b)
	if err == nil {
		t.Fatalf("the boot went on without its keys:\n%s", out)
	}
	line := "kubeha: the service account prod-master@p-test.iam.gserviceaccount.com may not read " + b.Keys +
		" (HTTP 403 from Secret Manager): grant it roles/secretmanager.secretAccessor on the secret; nothing started"
	if strings.TrimSpace(out) != line {
		t.Errorf("output %q\nwant the one line %q", out, line)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "etc/srv/kubernetes/pki"))
	if len(entries) != 0 {
		t.Errorf("files left in the PKI directory: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/manifests")); err == nil {
		t.Error("static pods were written")
	}
	if strings.Contains(calls, "kubelet") {
		t.Errorf("the kubelet was started:\n%s", calls)
	}
}

const kubeletBytes = "#!/bin/sh\n# a kubelet\n"

func sha512Hex(s string) string {
	sum := sha512.Sum512([]byte(s))
	return hex.EncodeToString(sum[:])
}

// startupScript renders b's metadata, serves it as GCE's metadata server
// does (the Metadata-Flavor header required) with the kubelet download
// beside it (b.KubeletURL is pointed there), and runs the real startup
// script with bash in a root directory of its own, with stand-ins for
// iptables (which keeps the rules) and systemctl that record their calls.
// It returns what the run left.
func startupScript(t *testing.T, b *Boot) (root, calls, out string, err error) {
	t.Helper()
	rerun := startupScriptRunner(t, b)
	root = t.TempDir()
	out, err = rerun(root)
	data, _ := os.ReadFile(root + ".calls")
	return root, string(data), out, err
}

// startupScriptRunner serves b's metadata and returns a function that
// runs the script on the machine of a root directory.
func startupScriptRunner(t *testing.T, b *Boot) func(root string) (string, error) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	var md map[string]string
	// The VM's metadata server and, for the keys, Secret Manager's access
	// method: stand-ins here; sim/machine runs the script against the
	// emulator's own metadata server and Secret Manager.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sa := "/computeMetadata/v1/instance/service-accounts/default/"
		switch {
		case r.URL.Path == "/release/kubelet":
			io.WriteString(w, kubeletBytes)
			return
		case r.URL.Path == sa+"email":
			io.WriteString(w, "prod-master@p-test.iam.gserviceaccount.com")
			return
		case r.URL.Path == sa+"token":
			io.WriteString(w, `{"access_token": "token-of-the-vm", "expires_in": 3599, "token_type": "Bearer"}`)
			return
		case r.URL.Path == "/v1/"+b.Keys+":access":
			if r.Header.Get("Authorization") != "Bearer token-of-the-vm" || strings.Contains(b.Keys, "denied") {
				http.Error(w, `{"error": {"code": 403, "status": "PERMISSION_DENIED"}}`, http.StatusForbidden)
				return
			}
			fmt.Fprintf(w, "{\n  \"name\": %q,\n  \"payload\": {\n    \"data\": %q\n  }\n}\n", b.Keys, base64.StdEncoding.EncodeToString([]byte(b.TLS.Keys())))
			return
		}
		v, ok := md[strings.TrimPrefix(r.URL.Path, "/computeMetadata/v1/instance/attributes/")]
		if r.Header.Get("Metadata-Flavor") != "Google" || !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		io.WriteString(w, v)
	}))
	t.Cleanup(srv.Close)
	b.KubeletURL = srv.URL + "/release/kubelet"
	b.SecretManagerURL = srv.URL
	if b.KubeletSHA512 == fixtureBoot().KubeletSHA512 {
		b.KubeletSHA512 = sha512Hex(kubeletBytes)
	}
	items, err := Render(*b)
	if err != nil {
		t.Fatal(err)
	}
	md = map[string]string{}
	for _, it := range items {
		md[it.Key] = it.Value
	}
	bin := t.TempDir()
	standIns := map[string]string{
		"iptables": `echo "iptables $*" >>"$KUBEHA_ROOT.calls"
rules="$KUBEHA_ROOT.iptables-rules"
case "$2" in
-C) echo "iptables $*" >>"$KUBEHA_ROOT.checks"; sed -i '$d' "$KUBEHA_ROOT.calls"; shift 2; grep -qxF "$*" "$rules" 2>/dev/null ;;
-A) shift 2; echo "$*" >>"$rules" ;;
esac`,
		"systemctl": `echo "systemctl $*" >>"$KUBEHA_ROOT.calls"`,
	}
	for name, body := range standIns {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(bin, "startup-script")
	if err := os.WriteFile(script, []byte(md[KeyStartupScript]), 0o755); err != nil {
		t.Fatal(err)
	}
	return func(root string) (string, error) {
		cmd := exec.Command(bash, script)
		cmd.Env = append(os.Environ(), "KUBEHA_ROOT="+root, "GCE_METADATA_HOST="+strings.TrimPrefix(srv.URL, "http://"), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// runStartupScript runs the startup script twice on one machine: the
// second run must change no file. It returns the root, the calls of the
// host's tools (the second run's after a "--- second run" line) and the
// Boot as rendered.
func runStartupScript(t *testing.T, b Boot) (string, string, Boot) {
	t.Helper()
	run := startupScriptRunner(t, &b)
	root := t.TempDir()
	if out, err := run(root); err != nil {
		t.Fatalf("startup script: %v\n%s", err, out)
	}
	before := snapshotTree(t, root)
	os.WriteFile(root+".calls", append(must(os.ReadFile(root+".calls")), "--- second run\n"...), 0o644)
	if out, err := run(root); err != nil {
		t.Fatalf("startup script, second run: %v\n%s", err, out)
	}
	if after := snapshotTree(t, root); after != before {
		t.Errorf("a second run changed the machine:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	calls, _ := os.ReadFile(root + ".calls")
	return root, string(calls), b
}

func must(data []byte, _ error) []byte { return data }

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
