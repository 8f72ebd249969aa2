package executor

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// BenchmarkReplace replaces one master of three (apply --replace) by
// moving its disk and by member, with etcd databases of 10 MB, 200 MB and
// 1 GB (KUBEHA_BENCH_DB_MB="10,200,1024" chooses), on the emulator's gce
// latency profile at 1/5 of real time with etcd's default timing. By
// member, a learner receives the whole database from the leader before it
// is promoted; by disk, the member restarts on its data (replaying its raft
// log since etcd's last snapshot of it: see smallWrites). Neither saves a
// snapshot here (no backups directory): the snapshot both take first costs
// the same for either, and grows with the database.
func BenchmarkReplace(b *testing.B) {
	sizes := []int{10, 200, 1024}
	if v := os.Getenv("KUBEHA_BENCH_DB_MB"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("KUBEHA_BENCH_DB_MB=%q: want sizes in MB, e.g. 10,200,1024", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, mb := range sizes {
		b.Run(fmt.Sprintf("db=%dMB", mb), func(b *testing.B) {
			e := newEnv(b, sim.Options{Profile: "gce", TimeScale: 0.2, EtcdTickMs: 100, EtcdElectionMs: 1000}, 3)
			p, obs := e.plan(b)
			if err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki}); err != nil {
				b.Fatal(err)
			}
			_, obs = e.plan(b)
			size := fill(b, e, obs, int64(mb)<<20)
			for _, by := range []string{spec.ReplaceByDisk, spec.ReplaceByMember} {
				b.Run("by="+by, func(b *testing.B) {
					e.sp.Spec.Masters.ReplaceBy = by
					var wall, down time.Duration
					for i := 0; i < b.N; i++ {
						wall, down = replaceOne(b, e)
					}
					b.ReportMetric(wall.Seconds(), "wall-s")
					if by == spec.ReplaceByDisk {
						// The member's downtime: fault tolerance is 0 meanwhile.
						b.ReportMetric(down.Seconds(), "member-down-s")
					}
					b.ReportMetric(float64(size)/(1<<20), "db-MB")
				})
			}
		})
	}
}

// fill writes 1 MiB values of random bytes until etcd's database is at
// least size bytes, and returns its size.
func fill(b *testing.B, e *env, obs *state.Cluster, size int64) int64 {
	b.Helper()
	var endpoints []string
	for _, in := range obs.Instances {
		endpoints = append(endpoints, "https://"+in.InternalIP+":2379")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: e.src.EtcdTLS, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	value := make([]byte, 1<<20)
	ctx := context.Background()
	for i := 0; ; i++ {
		if i%16 == 0 {
			st, err := cli.Status(ctx, endpoints[0])
			if err != nil {
				b.Fatal(err)
			}
			if st.DbSize >= size {
				smallWrites(b, cli)
				return st.DbSize
			}
		}
		rand.Read(value)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := cli.Put(pctx, fmt.Sprintf("/bench/%06d", i), string(value))
		cancel()
		if err != nil {
			b.Fatalf("fill etcd to %d MB: put %d: %v", size>>20, i, err)
		}
	}
}

// stepTimes logs when each step ends and keeps when a disk move took the
// member down and brought it back.
type stepTimes struct {
	NoHooks
	b              *testing.B
	t0             time.Time
	mu             sync.Mutex
	downAt, backAt time.Duration
}

func (h *stepTimes) StepStarted(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Step.KeepDisk {
		h.downAt = time.Since(h.t0)
	}
}

func (h *stepTimes) StepFinished(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	at := time.Since(h.t0)
	if e.Step.Instance != nil && e.Step.Instance.MoveDisk {
		h.backAt = at
	}
	h.b.Logf("%6.1fs %s %s (%.1fs)", at.Seconds(), e.Step.Action, e.Step.Target, e.Elapsed.Seconds())
}

// smallWrites writes 11,000 keys of 1 KiB, 16 at a time, as a cluster's
// everyday writes are small: etcd takes a snapshot of its raft log every
// 10,000 entries, so a member that restarts replays only the small writes
// after it, as on a cluster in use, rather than the fill's 1 MiB values.
func smallWrites(b *testing.B, cli *clientv3.Client) {
	b.Helper()
	value := strings.Repeat("k", 1<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 11000; i += 16 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := cli.Put(ctx, fmt.Sprintf("/bench-small/%05d", i), value)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("small writes: %v", err)
	}
}

// replaceOne replaces the first master that does not lead etcd and returns
// how long the apply took and how long a disk move's member was down; the
// cluster must converge.
func replaceOne(b *testing.B, e *env) (time.Duration, time.Duration) {
	b.Helper()
	b.StopTimer()
	_, obs := e.plan(b)
	name := ""
	for _, m := range obs.Etcd.Members {
		if !m.Leader && name == "" {
			name = m.Instance
		}
	}
	p, err := planner.ComputeWith(e.sp, obs, planner.Options{Replace: []string{name}})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	t0 := time.Now()
	hooks := &stepTimes{b: b, t0: t0}
	if err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki,
		RateLimit: 20 / 0.2, Hooks: hooks}); err != nil {
		b.Fatalf("replace %s by %s: %v\n%s", name, e.sp.Spec.Masters.ReplaceBy, err, planner.Format(p))
	}
	wall := time.Since(t0)
	b.StopTimer()
	if again, _ := e.plan(b); !again.NoChanges {
		b.Fatalf("not converged after replacing %s by %s:\n%s", name, e.sp.Spec.Masters.ReplaceBy, planner.Format(again))
	}
	return wall, hooks.backAt - hooks.downAt
}
