package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKillAnywhere kills apply with SIGKILL at every step boundary (after
// k finished steps, k = 0, 1, ...) and in the middle of every step (once
// step k+1 has started) of 1 -> 3 and of 3 -> 1, then checks that quorum
// held and that the next apply converges with nothing orphaned. The
// positions are shared out among clusters that run at once (in goroutines
// rather than with t.Parallel, which go test bounds by the number of CPUs:
// the work is mostly waiting).
func TestKillAnywhere(t *testing.T) {
	t.Parallel()
	const shards = 4
	var wg sync.WaitGroup
	defer wg.Wait()
	for shard := range shards {
		wg.Go(func() { t.Run(fmt.Sprintf("shard-%d", shard), func(t *testing.T) { killShard(t, shard, shards) }) })
	}
}

// killShard covers the kill positions shard, shard+shards, ...: position
// 2k is after k finished steps, 2k+1 in the middle of step k+1.
func killShard(t testing.TB, shard, shards int) {
	c, _ := appliedCluster(t, fmt.Sprintf("killed%d", shard), 1, false)
	kills := 0
	defer func() { t.Logf("%d applies killed", kills) }()
	for pos := shard; ; pos += shards {
		k, mid := pos/2, pos%2 == 1
		where := fmt.Sprintf("after %d steps", k)
		if mid {
			where = fmt.Sprintf("in the middle of step %d", k+1)
		}
		ran := false
		for _, n := range []int{3, 1} {
			c.write(n, false)
			if total := c.planSteps(); k >= total {
				continue // this position is past the end of this plan
			}
			ran = true
			killed := c.killAfter("apply", k, mid)
			if killed {
				kills++
			}
			switch {
			case !killed && mid:
				// The steps left finished between two reads of the
				// output: there was no moment to catch.
				t.Logf("toward %d masters, the steps after %d took less than a read of the output: not killed %s", n, k, where)
			case !killed:
				t.Errorf("toward %d masters, apply finished before it could be killed %s", n, where)
			}
			c.quorumHeld(fmt.Sprintf("after a kill %s toward %d masters", where, n))
			c.apply()
			c.converged(n)
		}
		if !ran {
			return
		}
	}
}

// planSteps is the number of steps the plan for the current spec has.
func (c *cluster) planSteps() int {
	c.t.Helper()
	return len(c.planned())
}

// killAfter runs kubeha verb (apply, destroy) and SIGKILLs it once k steps
// are done (mid: once the next step has started). It says whether it was
// killed before it finished.
func (c *cluster) killAfter(verb string, k int, mid bool) bool {
	c.t.Helper()
	cmd := execCommand(kubeha, verb, "-f", c.spec, "--auto-approve", "--gce-endpoint", c.endpoint)
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	killed := make(chan bool, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var text strings.Builder
		for {
			n, err := out.Read(buf)
			text.Write(buf[:n])
			done := strings.Count(text.String(), " done in ")
			started := strings.Count(text.String(), " ...\n")
			if strings.Contains(text.String(), "kubeha will perform") && done >= k && (!mid || started > done) {
				killed <- cmd.Process.Kill() == nil
				return
			}
			if err != nil {
				killed <- false
				return
			}
		}
	}()
	ok := <-killed
	cmd.Wait()
	return ok
}

// TestConcurrentApplies: a second apply fails naming the holder (or waits
// with --lock-timeout) — on the same machine through the PKI's file lock,
// and from "another machine" (a copy of the PKI elsewhere) through etcd.
func TestConcurrentApplies(t *testing.T) {
	c, _ := appliedCluster(t, "locked", 1, false)
	c.write(3, false)
	// Another machine: the same spec and PKI in another directory.
	otherSpec := c.otherMachine()
	first := execCommand(kubeha, "apply", "-f", c.spec, "--auto-approve", "--gce-endpoint", c.endpoint)
	out, _ := first.StdoutPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the first apply holds the lock (it has started a step).
	buf := make([]byte, 4096)
	var seen strings.Builder
	for !strings.Contains(seen.String(), " ...\n") {
		n, err := out.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("first apply ended early: %s", seen.String())
		}
	}
	go func() {
		for {
			if _, err := out.Read(buf); err != nil {
				return
			}
		}
	}()
	same := c.kubeha("apply", "-f", c.spec, "--auto-approve")
	if same.code != 1 || !strings.Contains(same.stderr, "another kubeha apply or watch on this machine is changing cluster locked") {
		t.Errorf("second apply on the same machine: %+v", same)
	}
	elsewhere := runKubeha(t, "", "apply", "-f", otherSpec, "--auto-approve", "--gce-endpoint", c.endpoint)
	if elsewhere.code != 1 || !strings.Contains(elsewhere.stderr, "cluster locked is being changed by ") || !strings.Contains(elsewhere.stderr, "(pid ") {
		t.Errorf("second apply from another machine: %+v", elsewhere)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	// Waiting with --lock-timeout succeeds once the lock is free.
	waited := runKubeha(t, "", "apply", "-f", otherSpec, "--auto-approve", "--lock-timeout", "30s", "--gce-endpoint", c.endpoint)
	if waited.code != 0 {
		t.Fatalf("apply --lock-timeout: %+v", waited)
	}
	c.converged(3)
	noKeyMaterial(t, "apply output", same.stdout, same.stderr, elsewhere.stdout, elsewhere.stderr, waited.stdout, waited.stderr, seen.String())
}

// quorumHeld checks that etcd has a healthy quorum; a member too busy to
// answer one status call is not a lost quorum, so three observations over
// a few seconds must all say it is lost.
func (c *cluster) quorumHeld(when string) {
	c.t.Helper()
	var s status
	for try := 0; try < 3; try++ {
		s = c.status()
		if s.Etcd.Voters == 0 || s.Etcd.HealthyVoters >= s.Etcd.Quorum {
			return
		}
		time.Sleep(2 * time.Second)
	}
	c.t.Fatalf("%s, quorum is lost: %+v", when, s.Etcd)
}
