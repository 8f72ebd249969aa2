package kubelet

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubeha/kubeha/spec"
)

func testBinaries(t *testing.T) *Binaries {
	t.Helper()
	wd, _ := os.Getwd()
	b, err := FindBinaries(wd, spec.DefaultKubernetesVersion)
	if err != nil && os.Getenv("CI") == "" {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// etcdPod is a static pod of the real etcd, plaintext, on ip.
func etcdPod(image, ip, dir string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: etcd, namespace: kube-system}
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: %s
    command:
    - etcd
    - --data-dir=%s
    - --listen-client-urls=http://%s:2379
    - --advertise-client-urls=http://%s:2379
    - --listen-peer-urls=http://%s:2380
    - --initial-advertise-peer-urls=http://%s:2380
    - --initial-cluster=default=http://%s:2380
`, image, dir, ip, ip, ip, ip, ip)
}

func waitState(t *testing.T, r *Runner, want func(PodStatus) bool, what string) PodStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := r.Status()
		if len(st) == 1 && want(st[0]) {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %+v", what, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunnerRunsRestartsAndStops: a static pod runs as a process of the
// real binary of its image; a container that dies is restarted; a pod
// whose manifest is removed is stopped; an image of another version than
// the one built is refused, as it would be another binary.
func TestRunnerRunsRestartsAndStops(t *testing.T) {
	b := testBinaries(t)
	dir := t.TempDir()
	ip := fmt.Sprintf("127.%d.%d.9", 100+rand.IntN(100), rand.IntN(250))
	r := &Runner{Manifests: filepath.Join(dir, "manifests"), Binaries: b, Address: ip, LogDir: filepath.Join(dir, "logs"), Poll: 100 * time.Millisecond}
	os.MkdirAll(r.Manifests, 0o755)
	image := "registry.k8s.io/etcd:" + strings.TrimPrefix(b.Etcd, "v") + "-0"
	if err := os.WriteFile(filepath.Join(r.Manifests, "etcd.yaml"), []byte(etcdPod(image, ip, filepath.Join(dir, "data"))), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Start()
	defer r.Stop()
	waitState(t, r, func(p PodStatus) bool { return p.State == "running" }, "etcd running")
	pids := r.PIDs()
	if len(pids) != 1 {
		t.Fatalf("pids %v", pids)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	waitState(t, r, func(p PodStatus) bool { return p.State == "running" && p.Restarts == 1 }, "etcd restarted after it was killed")
	if got := r.PIDs(); len(got) != 1 || got[0] == pids[0] {
		t.Fatalf("after the restart: pids %v (was %v)", got, pids)
	}
	pid := r.PIDs()[0]
	os.Remove(filepath.Join(r.Manifests, "etcd.yaml"))
	deadline := time.Now().Add(10 * time.Second)
	for len(r.Status()) > 0 || syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the pod of a removed manifest still runs: %+v", r.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Another version of the image: refused, nothing started.
	if err := os.WriteFile(filepath.Join(r.Manifests, "etcd.yaml"), []byte(etcdPod("registry.k8s.io/etcd:3.5.21-0", ip, filepath.Join(dir, "data"))), 0o644); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, r, func(p PodStatus) bool { return p.State == "failed" }, "an image of another version refused")
	if !strings.Contains(st.Error, "make kube-binaries") || len(r.PIDs()) != 0 {
		t.Fatalf("refusal: %+v, pids %v", st, r.PIDs())
	}
}

// TestResolve maps images to the binaries built, by version.
func TestResolve(t *testing.T) {
	b := &Binaries{Dir: "/bin/k", Kubernetes: "v1.37.2", Etcd: "v3.7.3", Healthcheck: "1.34.0"}
	for image, want := range map[string]string{
		"registry.k8s.io/etcd:3.7.3-0":                           "/bin/k/etcd",
		"registry.k8s.io/kube-apiserver:v1.37.2":                 "/bin/k/kube-apiserver",
		"registry.k8s.io/kube-controller-manager:v1.37.2":        "/bin/k/kube-controller-manager",
		"registry.k8s.io/kube-scheduler:v1.37.2":                 "/bin/k/kube-scheduler",
		"registry.k8s.io/kops/kube-apiserver-healthcheck:1.34.0": "/bin/k/kube-apiserver-healthcheck",
		"registry.k8s.io/kops/kube-apiserver-healthcheck:1.30.0": "",
		"registry.k8s.io/kube-apiserver:v1.33.1":                 "",
		"registry.k8s.io/etcd:3.5.21-0":                          "",
		"docker.io/library/nginx:1":                              "",
	} {
		got, err := b.Resolve(image)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("Resolve(%s) = %q, %v; want %q", image, got, err, want)
		}
	}
}

// TestContainersDieWithTheEmulator: an emulator killed with SIGKILL, which
// cannot stop its machines, takes their containers with it; otherwise they
// would hold the machines' ports for the next emulator.
func TestContainersDieWithTheEmulator(t *testing.T) {
	if dir := os.Getenv("KUBEHA_TEST_RUNNER_DIR"); dir != "" {
		// The child: a runner of the etcd pod in dir, until killed.
		b, err := LoadBinaries(os.Getenv("KUBEHA_TEST_RUNNER_BINARIES"))
		if err != nil {
			t.Fatal(err)
		}
		r := &Runner{Manifests: filepath.Join(dir, "manifests"), Binaries: b, Address: os.Getenv("KUBEHA_TEST_RUNNER_IP"), LogDir: filepath.Join(dir, "logs"), Poll: 100 * time.Millisecond}
		r.Start()
		for {
			if pids := r.PIDs(); len(pids) == 1 {
				os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprint(pids[0])), 0o644)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	b := testBinaries(t)
	dir := t.TempDir()
	ip := fmt.Sprintf("127.%d.%d.9", 100+rand.IntN(100), rand.IntN(250))
	os.MkdirAll(filepath.Join(dir, "manifests"), 0o755)
	image := "registry.k8s.io/etcd:" + strings.TrimPrefix(b.Etcd, "v") + "-0"
	if err := os.WriteFile(filepath.Join(dir, "manifests", "etcd.yaml"), []byte(etcdPod(image, ip, filepath.Join(dir, "data"))), 0o644); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestContainersDieWithTheEmulator$")
	child.Env = append(os.Environ(), "KUBEHA_TEST_RUNNER_DIR="+dir, "KUBEHA_TEST_RUNNER_BINARIES="+b.Dir, "KUBEHA_TEST_RUNNER_IP="+ip)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	deadline := time.Now().Add(30 * time.Second)
	for pid == 0 {
		data, _ := os.ReadFile(filepath.Join(dir, "pid"))
		fmt.Sscan(string(data), &pid)
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("the child runner did not start etcd")
		}
		time.Sleep(50 * time.Millisecond)
	}
	child.Process.Kill()
	child.Wait()
	for syscall.Kill(pid, 0) == nil {
		if status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(status), ") Z ") {
			break // killed, not yet reaped by its new parent
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("etcd (pid %d) outlived the runner killed with SIGKILL", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
