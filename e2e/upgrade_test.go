package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeha/kubeha/spec"
)

// Upgrades across releases: the masters start on the release before the
// newest, and a change of spec.kubernetes.version replaces them (by disk
// in TestDiskMovesUnderAWorkload, by member in
// TestWorkloadsOutliveAMaster). These helpers set the version and check
// what every master runs.

// oldRelease is the release before the newest: where upgrades start.
var oldRelease = spec.Releases[1]

var versionLine = regexp.MustCompile(`(?m)^  kubernetes:\n    version: v[0-9.]+\n`)

// setVersion sets spec.kubernetes.version (in the spec's tail) for the
// next write.
func (c *cluster) setVersion(version string) {
	line := "  kubernetes:\n    version: " + version + "\n"
	if versionLine.MatchString(c.tail) {
		c.tail = versionLine.ReplaceAllString(c.tail, line)
	} else {
		c.tail += line
	}
}

// checkReleases checks that every master runs release rel: its API
// server's /version (asked at its own address), its etcd server's
// version, its Node's kubelet; and that the API through the static IP,
// asked with kubectl, says so too. A master made again last may still be
// starting its API server and registering its kubelet when etcd has
// converged: the checks are repeated for up to 3 minutes.
func checkReleases(t *testing.T, c *cluster, s status, k kubectl, api *apiClient, rel spec.Release) {
	t.Helper()
	cli := c.etcd(s)
	var problems []string
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(2 * time.Second) {
		problems = releaseProblems(s, k, api, cli, rel)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func releaseProblems(s status, k kubectl, api *apiClient, cli *clientv3.Client, rel spec.Release) []string {
	var out []string
	for _, r := range s.Replicas {
		code, body := api.call(r.InternalIP, "GET", "/version", "")
		var v struct {
			GitVersion string `json:"gitVersion"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.GitVersion != rel.Kubernetes {
			out = append(out, fmt.Sprintf("the API server of %s: /version %d %s, want %s", r.Name, code, body, rel.Kubernetes))
		}
	}
	for _, ep := range cli.Endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err != nil || "v"+st.Version != rel.Etcd {
			out = append(out, fmt.Sprintf("etcd at %s: version %v (%v), want %s", ep, st, err, rel.Etcd))
		}
	}
	var l nodeList
	if err := k.decode(&l, "get", "nodes"); err != nil {
		return append(out, err.Error())
	}
	for _, r := range s.Replicas {
		found := false
		for _, n := range l.Items {
			if n.Metadata.Name == r.Name {
				found = true
				if n.Status.NodeInfo.KubeletVersion != rel.Kubernetes {
					out = append(out, fmt.Sprintf("master %s's kubelet is %s, want %s", r.Name, n.Status.NodeInfo.KubeletVersion, rel.Kubernetes))
				}
			}
		}
		if !found {
			out = append(out, "master "+r.Name+" has no Node")
		}
	}
	// kubectl version warns of its own skew (Debian's kubectl is v1.32):
	// the server's /version is read raw.
	var ver struct {
		GitVersion string `json:"gitVersion"`
	}
	raw, err := k.run("get", "--raw", "/version")
	if err == nil {
		err = json.Unmarshal([]byte(raw), &ver)
	}
	if err != nil || ver.GitVersion != rel.Kubernetes {
		out = append(out, fmt.Sprintf("kubectl get --raw /version through the static IP: %+v (%v), want %s", ver, err, rel.Kubernetes))
	}
	return out
}

// workerVersions are the kubelet versions of the hollow nodes.
func workerVersions(t *testing.T, k kubectl, prefix string) []string {
	t.Helper()
	var l nodeList
	if err := k.decode(&l, "get", "nodes"); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range l.Items {
		if strings.HasPrefix(n.Metadata.Name, prefix) {
			out = append(out, n.Status.NodeInfo.KubeletVersion)
		}
	}
	return out
}

// planRuns checks that the plan of an upgrade says, on the steps that add
// or remove a master, which releases then run, and returns its text.
func planRuns(t *testing.T, c *cluster, from, to spec.Release) string {
	t.Helper()
	r := c.kubeha("plan", "-f", c.spec)
	mixed := "then running: " + from.Kubernetes + " (etcd " + from.Etcd + ")"
	if r.code != 0 || !strings.Contains(r.stdout, mixed) || !strings.Contains(r.stdout, to.Kubernetes+" (etcd "+to.Etcd+")") {
		t.Fatalf("the upgrade's plan does not say which releases run after each step (%q):\n%s\n%s", mixed, r.stdout, r.stderr)
	}
	return r.stdout
}

// upgradeByMember upgrades the 3 masters of a cluster with hollow nodes
// and a workload from oldRelease to the newest by member (each replaced,
// successor first), while a client writes through the static IP every
// 100 ms and the leader leases and the nodes are watched: the writes go
// on within what the load balancer's health check bounds, the leases
// always have a live holder, no hollow node goes NotReady, the pods keep
// running, and every master then runs the new release.
func upgradeByMember(t *testing.T, c *cluster, k kubectl, api *apiClient) {
	t.Helper()
	from, to := oldRelease, spec.Releases[0]
	pods := runningPods(k, "app=web")
	c.setVersion(to.Kubernetes)
	c.write(3, false)
	if plan := planRuns(t, c, from, to); strings.Count(plan, "add-etcd-learner") != 3 {
		t.Fatalf("the upgrade by member does not add 3 learners:\n%s", plan)
	}
	upgradeUnderAWorkload(t, k, api, "upgrade "+from.Kubernetes+" → "+to.Kubernetes+" by member (3 replacements)", func() { c.apply() })
	s := c.converged(3)
	checkReleases(t, c, s, k, api, to)
	if n := runningPods(k, "app=web"); n != pods {
		t.Errorf("%d pods Running after the upgrade, %d before", n, pods)
	}
}
