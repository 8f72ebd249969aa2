package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

func freeAddr(t testing.TB) string {
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

func (w *watcher) metric(t testing.TB, name string) string {
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

// waitFor asks ok until it holds, every 200 ms at first and then less
// often, up to every second: many checks run kubectl, whose every run
// costs the machine the tests measure.
func waitFor(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 200 * time.Millisecond
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pause)
		pause = min(pause*3/2, time.Second)
	}
}

// writeAtomic saves as editors do: a temporary file renamed over the spec.
func writeAtomic(t testing.TB, path string, data []byte) {
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
	t.Parallel()
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

// TestWatchRemediation: with remediation on, a crashed member is replaced
// by a later resync, in its zone, once unhealthy for unhealthyAfter (30s).
func TestWatchRemediation(t *testing.T) {
	t.Parallel() // mostly waiting out unhealthyAfter
	c, s := appliedCluster(t, "resynced", 3, true)
	// The lowest-ID voter: a health gate that asked members one after
	// another under one deadline counted every member after it as down.
	victim, zone := lowestVoter(t, s)
	w := c.watch("3s")
	waitFor(t, 30*time.Second, "the watcher to lead", func() bool {
		return strings.HasSuffix(w.metric(t, `kubeha_watch_leader{cluster="resynced"}`), " 1")
	})
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + victim + "/crash")
	waitFor(t, 2*time.Minute, "a resync to replace "+victim, func() bool {
		return strings.Contains(w.logs(), "target="+victim) && strings.Contains(w.logs(), "action=delete-instance target="+victim)
	})
	waitFor(t, time.Minute, "the replacement to finish", func() bool { return strings.Count(w.logs(), "msg=applied") >= 1 })
	s = c.converged(3)
	inZone := 0
	for _, r := range s.Replicas {
		if r.Name == victim {
			t.Fatalf("%s is still a master", victim)
		}
		if r.Zone == zone {
			inZone++
		}
	}
	if inZone != 1 {
		t.Fatalf("the successor is not in %s: %+v", zone, s.Replicas)
	}
}

// TestWatchSIGTERMDuringApply: SIGTERM in the middle of an apply stops at a
// safe point with exit 0; a later apply converges.
func TestWatchSIGTERMDuringApply(t *testing.T) {
	c := newCluster(t, "stopped")
	c.write(5, false)
	w := c.watch("10m")
	waitFor(t, 60*time.Second, "the apply to be under way", func() bool { return strings.Count(w.logs(), "msg=\"step done\"") >= 8 })
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("watch after SIGTERM during an apply: %v\n%s", err, w.logs())
	}
	c.quorumHeld("after SIGTERM during an apply")
	c.apply()
	c.converged(5)
}

// TestWatchRefusesSharedPKI: two specs of a directory that would share a PKI
// directory: the second is refused, nothing of it is created.
func TestWatchRefusesSharedPKI(t *testing.T) {
	c := newCluster(t, "first")
	c.write(1, false)
	other := fmt.Sprintf(tourSpec, "second", 1, false)
	if err := os.WriteFile(filepath.Join(c.dir, "second.yaml"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &watcher{metrics: freeAddr(t)}
	w.cmd = execCommand(kubeha, "watch", "-f", c.dir, "--gce-endpoint", c.endpoint, "--resync", "10m", "--listen", w.metrics)
	logPath := filepath.Join(t.TempDir(), "watch.log")
	f, _ := os.Create(logPath)
	w.cmd.Stderr = f
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { w.cmd.Process.Kill(); w.cmd.Wait() }()
	logs := func() string { data, _ := os.ReadFile(logPath); return string(data) }
	waitFor(t, 60*time.Second, "one cluster applied and the other refused", func() bool {
		return strings.Contains(logs(), "msg=applied") && strings.Contains(logs(), "clusters must not share CAs")
	})
	if strings.Count(logs(), "msg=applied") != 1 {
		t.Fatalf("both clusters were applied:\n%s", logs())
	}
}

// TestWatchLeadershipFollowsReplacedMaster: the watcher's leadership lives
// on a lease of the cluster's etcd; when the only master is replaced, the
// session follows the members to the successor instead of losing its
// lease (and the next change is applied by the same leader).
func TestWatchLeadershipFollowsReplacedMaster(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "followed")
	c.write(1, false)
	w := c.watch("10m")
	waitFor(t, 60*time.Second, "the first apply", func() bool { return strings.Contains(w.logs(), "msg=applied") })
	base, _ := os.ReadFile(c.spec)
	for i, quorumRead := range []bool{false, true} {
		writeAtomic(t, c.spec, []byte(fmt.Sprintf("%s  etcd:\n    quorumRead: %t\n", base, quorumRead)))
		waitFor(t, 90*time.Second, fmt.Sprintf("replacement %d of the only master", i+1), func() bool {
			return strings.Count(w.logs(), "msg=applied") >= i+2
		})
		// Outlive the lease (5s) of a session left on the deleted master.
		time.Sleep(6 * time.Second)
	}
	c.converged(1)
	if strings.Contains(w.logs(), "leadership lost") {
		t.Fatalf("the watcher lost its leadership when the only master was replaced:\n%s", w.logs())
	}
}
