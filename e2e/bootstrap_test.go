package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/pki"
)

// A new cluster of several masters is bootstrapped as one: every member
// started from one static initial cluster. These tests kill the bootstrap
// anywhere, make one member's boot fail, and run two bootstraps at once,
// and check each time that one etcd cluster results.

// planStep is what the e2e tests read of a step of plan -o json.
type planStep struct {
	Action string `json:"action"`
	Target string `json:"target"`
}

// planned is the steps of the plan for the current spec.
func (c *cluster) planned() []planStep {
	c.t.Helper()
	r := c.kubeha("plan", "-f", c.spec, "-o", "json")
	var p struct {
		Steps []planStep `json:"steps"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil {
		c.t.Fatalf("plan -o json: %+v", r)
	}
	return p.Steps
}

// otherMachine is the cluster's spec as another management machine has
// it: the same spec and a copy of the PKI, in another directory.
func (c *cluster) otherMachine() string {
	c.t.Helper()
	other := c.t.TempDir()
	data, _ := os.ReadFile(c.spec)
	if err := os.WriteFile(filepath.Join(other, "cluster.yaml"), data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(other, "pki"), os.DirFS(filepath.Join(c.dir, "pki"))); err != nil {
		c.t.Fatal(err)
	}
	return filepath.Join(other, "cluster.yaml")
}

// planInstances is the masters the plan for the current spec creates, in
// the plan's order.
func (c *cluster) planInstances() []string {
	c.t.Helper()
	var names []string
	for _, s := range c.planned() {
		if s.Action == "create-instance" {
			names = append(names, s.Target)
		}
	}
	return names
}

// oneCluster checks that every master's etcd member answers as a member of
// one cluster, the one the member list names, with n members.
func (c *cluster) oneCluster(s status, n int, down ...string) uint64 {
	c.t.Helper()
	cli := c.etcd(s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		c.t.Fatalf("member list: %v", err)
	}
	id := list.Header.ClusterId
	if len(list.Members) != n {
		c.t.Fatalf("etcd has %d members, want %d: %v", len(list.Members), n, list.Members)
	}
	for _, r := range s.Replicas {
		if slices.Contains(down, r.Name) {
			continue
		}
		st, err := cli.Status(ctx, "https://"+r.InternalIP+":2379")
		if err != nil {
			c.t.Fatalf("status of %s: %v", r.Name, err)
		}
		if st.Header.ClusterId != id {
			c.t.Fatalf("%s is a member of cluster %x, the member list's is %x: two clusters of one name", r.Name, st.Header.ClusterId, id)
		}
	}
	return id
}

// TestBootstrapWithAFailedBoot: 0 -> 5 where one master's guest never
// boots. The other four form the cluster (a quorum is three); apply fails
// naming the master and what its serial port says, at once rather than
// after the gate; the next apply replaces it.
func TestBootstrapWithAFailedBoot(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "boot5")
	c.write(5, false)
	names := c.planInstances()
	if len(names) != 5 {
		t.Fatalf("the bootstrap plan creates %v, want 5 masters at once", names)
	}
	failed := names[2]
	c.setFaults(fmt.Sprintf(`{"rate":0,"bootFailures":[%q]}`, failed))
	t0 := time.Now()
	r := c.kubeha("apply", "-f", c.spec, "--auto-approve")
	if r.code != 1 || !strings.Contains(r.stderr, "master "+failed+": its startup script failed") || !strings.Contains(r.stderr, "startup-script exit status 1") {
		t.Fatalf("apply with %s's boot failing: exit %d\n%s\n%s", failed, r.code, r.stdout, r.stderr)
	}
	if d := time.Since(t0); d > 2*time.Minute {
		t.Errorf("the failed boot took %s to report: the serial port should tell at once", d)
	}
	s := c.status()
	if s.Etcd.Voters != 5 || s.Etcd.HealthyVoters != 4 || s.Etcd.Quorum != 3 {
		t.Fatalf("after the failed boot, etcd is %+v: want 5 voters of which 4 healthy", s.Etcd)
	}
	c.oneCluster(s, 5, failed)
	plan := c.kubeha("plan", "-f", c.spec)
	if !strings.Contains(plan.stdout, "remove-etcd-member "+failed) || !strings.Contains(plan.stdout, "never started (its boot failed)") {
		t.Errorf("the plan after the failed boot does not replace %s:\n%s", failed, plan.stdout)
	}
	c.setFaults(`{"rate":0}`)
	c.apply()
	s = c.converged(5)
	for _, rp := range s.Replicas {
		if rp.Name == failed {
			t.Errorf("%s, whose boot failed, is still a master", failed)
		}
	}
	c.oneCluster(s, 5)
}

// TestBootstrapKilledAnywhere kills the bootstrap of 3 masters with
// SIGKILL after every number of finished steps, applies again and checks
// that one cluster of 3 results. Each position bootstraps a cluster of its
// own name; the positions are shared out among emulators that run at once.
func TestBootstrapKilledAnywhere(t *testing.T) {
	t.Parallel()
	const shards = 4
	var wg sync.WaitGroup
	defer wg.Wait()
	for shard := range shards {
		wg.Go(func() {
			t.Run(fmt.Sprintf("shard-%d", shard), func(t *testing.T) { bootstrapKillShard(t, shard, shards) })
		})
	}
}

func bootstrapKillShard(t testing.TB, shard, shards int) {
	c := newCluster(t, fmt.Sprintf("new%d", shard))
	c.write(3, false)
	total := c.planSteps()
	killed := 0
	for k := shard; k < total; k += shards {
		c.name = fmt.Sprintf("new%d-%d", shard, k)
		c.write(3, false)
		if c.killAfter("apply", k, false) {
			killed++
		} else {
			t.Errorf("apply finished before it could be killed after %d steps", k)
		}
		c.apply()
		s := c.converged(3)
		c.oneCluster(s, 3)
	}
	t.Logf("%d bootstraps of %d steps killed and completed", killed, total)
}

// TestConcurrentBootstraps starts two applies of the same new cluster at
// once: from one machine (the PKI's file lock refuses the second at once)
// and from two (copies of the PKI, as two operators sharing it would have):
// both plan the same masters, with the same names and the same initial
// cluster (one that looks once the other made some completes the other's),
// so whichever creates a master, one cluster results.
func TestConcurrentBootstraps(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "twice")
	c.write(3, false)
	// The CA both operators share (apply would make it on first use).
	if _, err := pki.Ensure(filepath.Join(c.dir, "pki"), "twice"); err != nil {
		t.Fatal(err)
	}
	specs := []string{c.spec, c.spec, c.otherMachine()}
	results := make([]result, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Go(func() {
			results[i] = runKubeha(t, "", "apply", "-f", sp, "--auto-approve", "--gce-endpoint", c.endpoint)
		})
	}
	wg.Wait()
	ok := 0
	for i, r := range results {
		switch {
		case r.code == 0:
			ok++
		case r.code == 1 && (strings.Contains(r.stderr, "another kubeha apply or watch on this machine is changing cluster twice") ||
			strings.Contains(r.stderr, "cluster twice is being changed by ") ||
			// It looked while the other's masters booted.
			strings.Contains(r.stderr, "If the masters are still booting, plan again in a minute")):
		default:
			t.Errorf("apply %d of %d at once: exit %d\n%s\n%s", i+1, len(specs), r.code, r.stdout, r.stderr)
		}
	}
	if ok == 0 {
		t.Fatalf("no apply of the three succeeded: %+v", results)
	}
	c.apply()
	s := c.converged(3)
	c.oneCluster(s, 3)
	for name, n := range c.counts() {
		if n != 1 {
			t.Errorf("%s exists %d times", name, n)
		}
	}
}
