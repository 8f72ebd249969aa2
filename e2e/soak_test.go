package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeha/kubeha/pki"
)

// TestWatchSoak runs `kubeha watch` with remediation on (unhealthyAfter
// 30s) over a 5-master cluster for KUBEHA_SOAK (say 10m; `make soak`),
// while one member flaps (crashed and revived every few seconds), another
// is crashed for good, and a writer puts a key every 100ms. It reports
// whether quorum was ever lost, the writes that failed and the longest gap
// between successful writes, the replacements made, and whether every
// key written is still there. Without KUBEHA_SOAK it is skipped.
func TestWatchSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("KUBEHA_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set KUBEHA_SOAK to a duration (make soak runs 10m)")
	}
	c, s := appliedCluster(t, "soak", 5, true)
	flapper, flapZone := s.Replicas[1].Name, s.Replicas[1].Zone
	dead, deadZone := s.Replicas[2].Name, s.Replicas[2].Zone
	w := c.watch("10s")
	waitFor(t, 30*time.Second, "the watcher to lead", func() bool {
		return strings.HasSuffix(w.metric(t, `kubeha_watch_leader{cluster="soak"}`), " 1")
	})

	tlsCfg, err := pki.LoadClientTLS(filepath.Join(c.dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, r := range s.Replicas {
		eps = append(eps, "https://"+r.InternalIP+":2379")
	}
	// The writer's client follows the members as masters are replaced.
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, TLS: tlsCfg, Logger: zap.NewNop(), AutoSyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		wg                    sync.WaitGroup
		mu                    sync.Mutex
		written               []string
		failed, probes, lost  int
		longestGap            time.Duration
		flaps, lostRun, worst int
	)
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + deadZone + "/instances/" + dead + "/crash")
	wg.Go(func() { // the writer
		lastOK := time.Now()
		for i := 0; ctx.Err() == nil; i++ {
			time.Sleep(100 * time.Millisecond)
			pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
			key := fmt.Sprintf("/soak/%06d", i)
			_, err := cli.Put(pctx, key, "v")
			pcancel()
			mu.Lock()
			if err == nil {
				written = append(written, key)
				longestGap = max(longestGap, time.Since(lastOK))
				lastOK = time.Now()
			} else {
				failed++
			}
			mu.Unlock()
		}
	})
	wg.Go(func() { // the flapper: down 3s, up 4s
		for ctx.Err() == nil {
			c.admin("/sim/v1/projects/kubeha-e2e/zones/" + flapZone + "/instances/" + flapper + "/crash")
			time.Sleep(3 * time.Second)
			c.admin("/sim/v1/projects/kubeha-e2e/zones/" + flapZone + "/instances/" + flapper + "/revive")
			mu.Lock()
			flaps++
			mu.Unlock()
			time.Sleep(4 * time.Second)
		}
	})
	wg.Go(func() { // the quorum probe: every second, each member's status
		for ctx.Err() == nil {
			time.Sleep(time.Second)
			voters, healthy := probeQuorum(cli)
			mu.Lock()
			probes++
			if voters > 0 && healthy < voters/2+1 {
				lost++
				lostRun++
				worst = max(worst, lostRun)
			} else {
				lostRun = 0
			}
			mu.Unlock()
		}
	})
	wg.Wait()
	// The flapper is up again; the watcher converges.
	waitFor(t, 3*time.Minute, "the watcher to converge", func() bool {
		r := c.kubeha("plan", "-f", c.spec, "--detailed-exitcode")
		st := c.status()
		return r.code == 0 && st.Etcd.Voters == 5 && st.Etcd.HealthyVoters == 5
	})
	logs := w.logs()
	replacements := strings.Count(logs, "action=delete-instance")
	gctx, gcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer gcancel()
	got, err := cli.Get(gctx, "/soak/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, kv := range got.Kvs {
		have[string(kv.Key)] = true
	}
	missing := 0
	for _, k := range written {
		if !have[k] {
			missing++
		}
	}
	t.Logf("soak %s: %d flaps of %s, %s crashed for good; quorum probes %d, lost in %d (longest run %d s); writes ok %d, failed %d, longest gap %s; replacements %d; keys missing %d; reconciles: %s",
		d, flaps, flapper, dead, probes, lost, worst, len(written), failed, longestGap.Round(time.Millisecond), replacements, missing, reconcileCounts(t, w))
	if worst >= 3 {
		t.Errorf("quorum was lost for %d probes in a row", worst)
	}
	if missing > 0 {
		t.Errorf("%d keys written are lost", missing)
	}
	if replacements < 1 || strings.Contains(logs, "target="+dead) == false {
		t.Errorf("the member crashed for good (%s) was not replaced", dead)
	}
	for _, r := range c.status().Replicas {
		if r.Name == dead {
			t.Errorf("%s is still a master", dead)
		}
	}
}

// probeQuorum asks every member for its status, each within a second.
func probeQuorum(cli *clientv3.Client) (voters, healthy int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return 0, 0
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range list.Members {
		if m.IsLearner || len(m.ClientURLs) == 0 {
			if !m.IsLearner {
				voters++
			}
			continue
		}
		voters++
		wg.Go(func() {
			sctx, scancel := context.WithTimeout(context.Background(), time.Second)
			defer scancel()
			if st, err := cli.Status(sctx, m.ClientURLs[0]); err == nil && st.Leader != 0 {
				mu.Lock()
				healthy++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return voters, healthy
}

func reconcileCounts(t testing.TB, w *watcher) string {
	var out []string
	for _, r := range []string{"noop", "applied", "failed", "standby"} {
		line := w.metric(t, `kubeha_reconciles_total{cluster="soak",result="`+r+`"}`)
		if f := strings.Fields(line); len(f) == 2 {
			out = append(out, r+"="+f[1])
		}
	}
	return strings.Join(out, " ")
}
