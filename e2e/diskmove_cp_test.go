package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/spec"
)

// upgradeUnderAWorkload runs change (an apply) while a client writes
// through the static IP every 100 ms and the leader leases and the nodes
// are watched, logs what it measured, and fails when the writes stopped
// for more than the load balancer's health check bounds (30 s), a lease
// went 45 s without a live holder renewing it (a lease of 15 s whose
// holder stops is taken by another within about its duration and a
// retry), or a hollow node went NotReady (a master's own kubelet stops
// with its VM).
func upgradeUnderAWorkload(t *testing.T, k kubectl, api *apiClient, what string, change func()) {
	t.Helper()
	w := startWriter(api, "heartbeat")
	nodes := watchNodes(k)
	leases := watchLeases(k)
	t0 := time.Now()
	change()
	took := time.Since(t0)
	time.Sleep(5 * time.Second) // the writes after
	failed, total, gap, errs := w.end()
	notReady := nodes.end()
	oldest, unread := leases.end()
	t.Logf("measured: %s in %s: %d of %d writes through the static IP failed, longest gap %s (errors: %v); the leases' longest time unrenewed: %v (%d reads unanswered); nodes NotReady: %v",
		what, took.Round(time.Second), failed, total, gap.Round(100*time.Millisecond), errs, oldest, unread, notReady)
	if gap > 30*time.Second {
		t.Errorf("the writes through the static IP stopped for %s", gap)
	}
	for lease, age := range oldest {
		if age > 45*time.Second {
			t.Errorf("lease %s went %s without a live holder renewing it", lease, age.Round(time.Second))
		}
	}
	for _, n := range notReady {
		if strings.Contains(n, "-node-") {
			t.Errorf("hollow node %s went NotReady", n)
		}
	}
}

// leaseWatch reads the controller manager's and the scheduler's leader
// leases every second through kubectl and keeps, for each, the longest
// time its holder went without renewing it.
type leaseWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	oldest     map[string]time.Duration
	unread     int
}

func watchLeases(k kubectl) *leaseWatch {
	w := &leaseWatch{stop: make(chan struct{}), done: make(chan struct{}), oldest: map[string]time.Duration{}}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(time.Second):
			}
			for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
				var l struct {
					Spec struct {
						HolderIdentity string    `json:"holderIdentity"`
						RenewTime      time.Time `json:"renewTime"`
					} `json:"spec"`
				}
				err := k.decode(&l, "-n", "kube-system", "get", "lease", lease)
				w.mu.Lock()
				switch {
				case err != nil:
					w.unread++ // the API did not answer this read: no finding
				case l.Spec.HolderIdentity == "":
					w.oldest[lease] = max(w.oldest[lease], time.Hour)
				default:
					w.oldest[lease] = max(w.oldest[lease], time.Since(l.Spec.RenewTime))
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *leaseWatch) end() (map[string]time.Duration, int) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.oldest, w.unread
}

// TestDiskMovesUnderAWorkload: 3 masters of the whole control plane on
// the release before the newest (Kubernetes v1.36.3, etcd v3.6.8) and 10
// hollow nodes of that release running a Deployment of 50 pods, with
// ConfigMaps written. The spec is upgraded to the newest release with
// spec.masters.replaceBy: disk, and each master's VM is made again on its
// disk with the new release (its etcd v3.7.3 opens the v3.6.8 member's
// data), while a client writes through the static IP every 100 ms: the
// longest gap between its writes stays within what the load balancer's
// health check bounds, the leader leases are renewed throughout by a live
// holder, no hollow node goes NotReady, the pods keep running, every
// ConfigMap is there and the etcd members keep their IDs; every master's
// API server, etcd and kubelet then run the new release, and the nodes,
// left on the old kubelet as the skew policy allows, keep working. Then a
// master's VM deleted out of band with gcloud is made again on its disk,
// and its API serves again.
func TestDiskMovesUnderAWorkload(t *testing.T) {
	t.Parallel()
	from, to := oldRelease, spec.Releases[0]
	c, s, k := joinedClusterAt(t, "mover", 10, from.Kubernetes)
	api := c.adminAPI(t)
	checkReleases(t, c, s, k, api, from)
	if got := workerVersions(t, k, "mover-node-"); len(got) != 10 || slices.ContainsFunc(got, func(v string) bool { return v != from.Kubernetes }) {
		t.Errorf("the hollow nodes run kubelets %v, want 10 of %s (the oldest release the masters run)", got, from.Kubernetes)
	}
	k.must("create", "deployment", "web", "--image=registry.k8s.io/pause:3.10", "--replicas=50")
	for i := 0; i < 5; i++ {
		k.must("create", "configmap", fmt.Sprintf("kept-%d", i), "--from-literal=n="+itoa(i))
	}
	waitFor(t, 4*time.Minute, "50 pods Running", func() bool { return runningPods(k, "app=web") == 50 })
	ids := memberIDs(t, c.etcd(s))

	c.setVersion(to.Kubernetes)
	c.moveDisks(3, "")
	planRuns(t, c, from, to)
	var r result
	upgradeUnderAWorkload(t, k, api, "upgrade "+from.Kubernetes+" → "+to.Kubernetes+" by 3 disk moves", func() { r = c.apply() })
	if strings.Contains(r.stdout, "add-etcd-learner") {
		t.Errorf("the disk moves added a learner:\n%s", r.stdout)
	}
	s = c.converged(3)
	checkReleases(t, c, s, k, api, to)
	if got := memberIDs(t, c.etcd(s)); !slices.Equal(got, ids) {
		t.Errorf("member IDs after the disk moves: %x, before: %x", got, ids)
	}
	for i := 0; i < 5; i++ {
		if _, err := k.run("get", "configmap", fmt.Sprintf("kept-%d", i)); err != nil {
			t.Errorf("ConfigMap kept-%d after the disk moves: %v", i, err)
		}
	}
	if n := runningPods(k, "app=web"); n != 50 {
		t.Errorf("%d of the 50 pods Running after the disk moves", n)
	}

	// A master's VM deleted out of band, its disk kept.
	gone := s.Replicas[2]
	if gcloud := c.gcloud(t); gcloud != nil {
		gcloud("compute", "instances", "delete", gone.Name, "--zone", gone.Zone, "--keep-disks", "data")
	} else if _, err := c.compute(t).Instances.Delete("kubeha-e2e", gone.Zone, gone.Name).Do(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, gone.Name+" deleted", func() bool {
		_, err := c.compute(t).Instances.Get("kubeha-e2e", gone.Zone, gone.Name).Do()
		return err != nil
	})
	if plan := c.kubeha("plan", "-f", c.spec); plan.code != 0 || !strings.Contains(plan.stdout, "its VM is gone") {
		t.Fatalf("plan after a VM was deleted out of band:\n%s\n%s", plan.stdout, plan.stderr)
	}
	c.apply()
	s = c.converged(3)
	waitFor(t, 3*time.Minute, "the API of "+gone.Name+" made again on its disk", func() bool {
		code, body := api.call(gone.InternalIP, "GET", "/api/v1/namespaces/default/configmaps/kept-0", "")
		return code == 200 && strings.Contains(body, "kept-0")
	})
	if got := memberIDs(t, c.etcd(s)); !slices.Equal(got, ids) {
		t.Errorf("member IDs after the VM was made again: %x, before: %x", got, ids)
	}
}
