package e2e

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// writer writes a ConfigMap through the static IP every 100 ms, a new
// connection each time (so the load balancer picks a master each time, as
// for any new client), and keeps what each call got.
type writer struct {
	api   *apiClient
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	calls []call
}

type call struct {
	at   time.Time
	took time.Duration
	ok   bool
	err  string
}

func startWriter(api *apiClient, name string) *writer {
	w := &writer{api: api, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			at := time.Now()
			code, body := api.viaLB("PUT", "/api/v1/namespaces/default/configmaps/"+name,
				fmt.Sprintf(`{"metadata":{"name":%q},"data":{"n":"%d"}}`, name, i))
			if code == 404 {
				code, body = api.viaLB("POST", "/api/v1/namespaces/default/configmaps", fmt.Sprintf(`{"metadata":{"name":%q},"data":{"n":"%d"}}`, name, i))
			}
			c := call{at: at, took: time.Since(at), ok: code == 200 || code == 201}
			if !c.ok {
				c.err = fmt.Sprintf("%d %.80s", code, body)
			}
			w.mu.Lock()
			w.calls = append(w.calls, c)
			w.mu.Unlock()
		}
	}()
	return w
}

// end stops the writer and says how many calls failed, of how many, and
// the longest time between two successful writes.
func (w *writer) end() (failed, total int, gap time.Duration, errs []string) {
	close(w.stop)
	<-w.done
	var last time.Time
	seen := map[string]bool{}
	for _, c := range w.calls {
		total++
		if !c.ok {
			failed++
			if !seen[c.err] && len(errs) < 5 {
				seen[c.err] = true
				errs = append(errs, c.err)
			}
			continue
		}
		if !last.IsZero() && c.at.Sub(last) > gap {
			gap = c.at.Sub(last)
		}
		last = c.at
	}
	return failed, total, gap, errs
}

// nodeWatch lists the nodes every 2 s and keeps every node it saw not Ready.
type nodeWatch struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	notReady map[string]bool
}

func watchNodes(k kubectl) *nodeWatch {
	n := &nodeWatch{stop: make(chan struct{}), done: make(chan struct{}), notReady: map[string]bool{}}
	go func() {
		defer close(n.done)
		for {
			var l nodeList
			if k.decode(&l, "get", "nodes") == nil {
				n.mu.Lock()
				for _, name := range l.notReady() {
					n.notReady[name] = true
				}
				n.mu.Unlock()
			}
			select {
			case <-n.stop:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return n
}

func (n *nodeWatch) end() []string {
	close(n.stop)
	<-n.done
	var out []string
	for name := range n.notReady {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// leaseHolder is the master (host name) that holds a leader lease.
func leaseHolder(k kubectl, lease string) string {
	var l struct {
		Spec struct {
			HolderIdentity string `json:"holderIdentity"`
		} `json:"spec"`
	}
	if k.decode(&l, "-n", "kube-system", "get", "lease", lease) != nil {
		return ""
	}
	host, _, _ := strings.Cut(l.Spec.HolderIdentity, "_")
	return host
}

// controllerManagerLeader is the master whose kube-controller-manager
// holds the leader lease, and its zone.
func controllerManagerLeader(t testing.TB, k kubectl, s status) (name, zone string) {
	t.Helper()
	name = leaseHolder(k, "kube-controller-manager")
	for _, r := range s.Replicas {
		if r.Name == name {
			return name, r.Zone
		}
	}
	t.Fatalf("the controller manager's lease is held by %q, no master of %+v", name, s.Replicas)
	return "", ""
}

func runningPods(k kubectl, selector string) int {
	var l podList
	if k.decode(&l, "get", "pods", "-l", selector) != nil {
		return -1
	}
	n, _ := l.running()
	return n
}

// TestWorkloadsOutliveAMaster: 3 masters and 20 hollow nodes run a
// Deployment of 200 pods. While a client writes through the static IP every
// 100 ms and the Deployment is scaled to 400, the master that holds the
// controller manager's (and, as it happens at boot, the scheduler's)
// lease hangs. The leases move to live masters, no node goes NotReady, all
// 400 pods run, and the writes go on after a gap the load balancer's health
// check bounds. Revived, the master rejoins. The masters, on the release
// before the newest, are upgraded to the newest by member
// (upgradeByMember); then 3 -> 5 -> 3 masters with the workload running,
// the removed masters' Nodes deleted. The figures go to
// docs/reliability.md.
func TestWorkloadsOutliveAMaster(t *testing.T) {
	t.Parallel()
	c, s, k := joinedClusterAt(t, "ha", 20, oldRelease.Kubernetes)
	api := c.adminAPI(t)
	k.must("create", "deployment", "web", "--image=registry.k8s.io/pause:3.10", "--replicas=200")
	waitFor(t, 4*time.Minute, "200 pods Running", func() bool { return runningPods(k, "app=web") == 200 })

	kcm, zone := controllerManagerLeader(t, k, s)
	t.Logf("measured: before the crash, kube-controller-manager's lease is held on %s and kube-scheduler's on %s", kcm, leaseHolder(k, "kube-scheduler"))
	w := startWriter(api, "heartbeat")
	nodes := watchNodes(k)
	time.Sleep(3 * time.Second) // the writes before the crash
	k.must("scale", "deployment", "web", "--replicas=400")
	crashed := time.Now()
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + kcm + "/crash")
	var moved time.Duration
	waitFor(t, 3*time.Minute, "the leases move to live masters", func() bool {
		k1, k2 := leaseHolder(k, "kube-controller-manager"), leaseHolder(k, "kube-scheduler")
		if k1 != "" && k1 != kcm && k2 != "" && k2 != kcm {
			moved = time.Since(crashed)
			return true
		}
		return false
	})
	var all400 time.Duration
	waitFor(t, 5*time.Minute, "400 pods Running after the crash", func() bool {
		if runningPods(k, "app=web") == 400 {
			all400 = time.Since(crashed)
			return true
		}
		return false
	})
	time.Sleep(5 * time.Second) // the writes after
	failed, total, gap, errs := w.end()
	notReady := nodes.end()
	t.Logf("measured: crash of %s: %d of %d writes failed, longest gap between writes %s (errors: %v); leases moved after %s; nodes NotReady (the hung master's own aside): %v; 400 pods Running %s after the crash",
		kcm, failed, total, gap.Round(100*time.Millisecond), errs, moved.Round(100*time.Millisecond), notReady, all400.Round(100*time.Millisecond))
	for _, n := range notReady {
		if n != kcm { // the hung master's own kubelet stops too
			t.Errorf("node %s went NotReady while a master hung", n)
		}
	}
	if gap > 30*time.Second {
		t.Errorf("the writes through the static IP stopped for %s", gap)
	}

	// Revived, it rejoins; then the masters are upgraded to the newest
	// release by member, and go 3 -> 5 -> 3, with the workload running.
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + kcm + "/revive")
	waitFor(t, 3*time.Minute, "the revived master healthy", func() bool {
		st := c.status()
		return st.Etcd.HealthyVoters == 3
	})
	upgradeByMember(t, c, k, api)
	w = startWriter(api, "heartbeat")
	nodes = watchNodes(k)
	t0 := time.Now()
	c.write(5, false)
	c.apply()
	c.converged(5)
	waitFor(t, 3*time.Minute, "5 masters' Nodes Ready", func() bool {
		var l nodeList
		_, m := 0, 0
		if k.decode(&l, "get", "nodes") == nil {
			_, m = l.ready()
		}
		return m == 5
	})
	up := time.Since(t0)
	t0 = time.Now()
	c.write(3, false)
	c.apply()
	c.converged(3)
	down := time.Since(t0)
	var l nodeList
	if err := k.decode(&l, "get", "nodes"); err != nil {
		t.Fatal(err)
	}
	if workers, masters := l.ready(); workers != 20 || masters != 3 || len(l.Items) != 23 {
		t.Errorf("after 5 -> 3: %d nodes, %d workers and %d masters Ready, want the removed masters' Nodes deleted", len(l.Items), workers, masters)
	}
	if n := runningPods(k, "app=web"); n != 400 {
		t.Errorf("after 3 -> 5 -> 3: %d pods Running, want 400", n)
	}
	failed, total, gap, errs = w.end()
	notReady = nodes.end()
	t.Logf("measured: 3 -> 5 in %s, 5 -> 3 in %s: %d of %d writes failed, longest gap %s (errors: %v); workers NotReady: %v",
		up.Round(time.Second), down.Round(time.Second), failed, total, gap.Round(100*time.Millisecond), errs, notReady)
	for _, n := range notReady {
		if strings.HasPrefix(n, "ha-node-") {
			t.Errorf("worker %s went NotReady during 3 -> 5 -> 3", n)
		}
	}
	if gap > 30*time.Second {
		t.Errorf("the writes through the static IP stopped for %s during 3 -> 5 -> 3", gap)
	}
}
