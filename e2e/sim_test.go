package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/api/option"

	compute "google.golang.org/api/compute/v1"
)

// startSimServe runs `kubeha sim serve` and returns its URL once it prints
// that it is listening.
func startSimServe(t testing.TB, dir string) (*exec.Cmd, string) {
	t.Helper()
	return startSimServeTB(t, dir)
}

func startSimServeB(b *testing.B, dir string) (*exec.Cmd, string) {
	b.Helper()
	return startSimServeTB(b, dir)
}

// startSimServeTB starts an emulator whose masters run etcd only; the
// tests of the whole control plane start theirs with startSimServeWith.
func startSimServeTB(t testing.TB, dir string) (*exec.Cmd, string) {
	t.Helper()
	return startSimServeWith(t, dir, "etcd")
}

func startSimServeWith(t testing.TB, dir, controlPlane string, flags ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(kubeha, append([]string{"sim", "serve", "--listen", "127.0.0.1:0", "--dir", dir, "--control-plane", controlPlane}, flags...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// The emulator's own errors (a panic, a member that cannot start) are
	// kept, and shown when the test fails.
	errLog, err := os.Create(dir + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = errLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// As a user stops it: the emulator stops its machines.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		errLog.Close()
		if t.Failed() {
			if data, _ := os.ReadFile(dir + ".stderr"); len(data) > 0 {
				t.Logf("kubeha sim serve's standard error:\n%s", lastBytes(data, 8<<10))
			}
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "sim: listening on "); ok {
				lines <- u
			}
		}
	}()
	select {
	case u := <-lines:
		return cmd, u
	case <-time.After(30 * time.Second):
		t.Fatal("kubeha sim serve did not print that it is listening")
	}
	return nil, ""
}

func TestSimServePersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	cmd, url := startSimServe(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The URL is accepted with or without the /compute/v1/ suffix by kubeha;
	// the Go client needs the suffix.
	c, err := compute.NewService(ctx, option.WithEndpoint(url+"/compute/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	op, err := c.Firewalls.Insert("p-test", &compute.Firewall{Name: "kept"}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	for op.Status != "DONE" {
		if op, err = c.GlobalOperations.Wait("p-test", op.Name).Context(ctx).Do(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sim serve after SIGTERM: %v", err)
	}
	_, url = startSimServe(t, dir)
	c, err = compute.NewService(ctx, option.WithEndpoint(url+"/compute/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Firewalls.Get("p-test", "kept").Context(ctx).Do(); err != nil {
		t.Fatalf("firewall after restart: %v", err)
	}
}

// lastBytes is the end of data, at most n bytes.
func lastBytes(data []byte, n int) []byte {
	if len(data) > n {
		return data[len(data)-n:]
	}
	return data
}

// TestTwoEmulatorsOnOneMachine: with a `kubeha sim serve` running with
// default options, `kubeha apply --sim` of ha-3.yaml (its own emulator,
// default options too) converges, on other addresses than the first
// emulator's masters, and so does a cluster applied through the first; a
// second `sim serve` of the first one's state directory is refused at
// once, naming the process that runs it.
func TestTwoEmulatorsOnOneMachine(t *testing.T) {
	t.Parallel()
	simDir := filepath.Join(t.TempDir(), "sim")
	_, url := startSimServe(t, simDir)
	_, served := simEnv(t, "quickstart.yaml")
	if r := runKubeha(t, "", "apply", "-f", served, "--auto-approve", "--gce-endpoint", url); r.code != 0 {
		t.Fatalf("apply through sim serve: %+v", r)
	}
	dir, embedded := simEnv(t, "ha-3.yaml")
	if r := runKubeha(t, "", "apply", "--sim", "--sim-dir", filepath.Join(dir, "sim"), "-f", embedded, "--auto-approve"); r.code != 0 {
		t.Fatalf("apply --sim beside a running sim serve: %+v", r)
	}
	ips := func(args ...string) []string {
		t.Helper()
		r := runKubeha(t, "", append([]string{"status", "-o", "json"}, args...)...)
		var s status
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil {
			t.Fatalf("status %v: %+v", args, r)
		}
		var out []string
		for _, rep := range s.Replicas {
			if !rep.Etcd.Healthy {
				t.Errorf("master %s is not healthy: %+v", rep.Name, rep)
			}
			out = append(out, rep.InternalIP)
		}
		return out
	}
	first := ips("-f", served, "--gce-endpoint", url)
	second := ips("--sim", "--sim-dir", filepath.Join(dir, "sim"), "-f", embedded)
	if len(first) != 1 || len(second) != 3 {
		t.Fatalf("masters: %v and %v", first, second)
	}
	for _, ip := range second {
		if slices.Contains(first, ip) {
			t.Errorf("both emulators handed out %s", ip)
		}
	}
	cmd := exec.Command(kubeha, "sim", "serve", "--listen", "127.0.0.1:0", "--dir", simDir)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address range in use") || !strings.Contains(string(out), "process ") {
		t.Fatalf("a second sim serve of one state directory: %v\n%s", err, out)
	}
}
