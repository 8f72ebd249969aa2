package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watcher is a running `kubeha watch`.
type watcher struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     strings.Builder
	metrics string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (c *cluster) watch(resync string) *watcher {
	c.t.Helper()
	w := &watcher{metrics: freeAddr(c.t)}
	w.cmd = execCommand(kubeha, "watch", "-f", c.spec, "--gce-endpoint", c.endpoint, "--resync", resync, "--listen", w.metrics, "--debounce", "100ms")
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			w.mu.Lock()
			w.log.WriteString(sc.Text() + "\n")
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}

func (w *watcher) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + w.metrics + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name) {
			return line
		}
	}
	return ""
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeAtomic saves as editors do: a temporary file renamed over the spec.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".swp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatchAppliesSavedChanges(t *testing.T) {
	c := newCluster(t, "watched")
	c.write(1, false)
	w := c.watch("10m")
	waitFor(t, 60*time.Second, "the first apply", func() bool { return strings.Contains(w.logs(), "msg=applied") })
	c.converged(1)
	data, _ := os.ReadFile(c.spec)
	writeAtomic(t, c.spec, []byte(strings.Replace(string(data), "replicas: 1", "replicas: 3", 1)))
	waitFor(t, 90*time.Second, "the edit to 3 masters to be applied", func() bool { return strings.Contains(w.logs(), "etcd_voters=3") })
	c.converged(3)
	// A half-written file changes nothing and is logged and counted.
	if err := os.WriteFile(c.spec, []byte("apiVersion: kubeha.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: watched\nspec:\n  masters: {replicas: 5, zones: [europe-west1-b"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the invalid spec to be reported", func() bool {
		return strings.Contains(w.logs(), "spec is invalid") && strings.HasSuffix(w.metric(t, `kubeha_invalid_spec_total{cluster="watched"}`), " 1")
	})
	c.write(3, false)
	c.converged(3)
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("watch after SIGTERM: %v\n%s", err, w.logs())
	}
	noKeyMaterial(t, "watch logs", w.logs())
}

// TestTwoWatchers: exactly one of two watchers of a cluster acts; when it is
// killed, the other takes over.
func TestTwoWatchers(t *testing.T) {
	c := newCluster(t, "pair")
	c.write(1, false)
	c.apply()
	a := c.watch("2s")
	waitFor(t, 30*time.Second, "the first watcher to lead", func() bool {
		return strings.HasSuffix(a.metric(t, `kubeha_watch_leader{cluster="pair"}`), " 1")
	})
	b := c.watch("2s")
	waitFor(t, 30*time.Second, "the second watcher to stand by", func() bool {
		return strings.HasSuffix(b.metric(t, `kubeha_watch_leader{cluster="pair"}`), " 0")
	})
	// While the first leads, a change is applied by it alone.
	c.write(3, false)
	waitFor(t, 90*time.Second, "the leader to apply 3 masters", func() bool { return strings.Contains(a.logs(), "etcd_voters=3") })
	if strings.Contains(b.logs(), "msg=applying") {
		t.Fatalf("the standby applied while the leader lived:\n%s", b.logs())
	}
	a.cmd.Process.Kill()
	a.cmd.Wait()
	waitFor(t, 30*time.Second, "the second watcher to take over", func() bool {
		return strings.HasSuffix(b.metric(t, `kubeha_watch_leader{cluster="pair"}`), " 1")
	})
	c.write(1, false)
	waitFor(t, 90*time.Second, "the new leader to apply", func() bool { return strings.Contains(b.logs(), "etcd_voters=1") })
	c.converged(1)
}
