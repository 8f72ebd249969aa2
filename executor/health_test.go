package executor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/state"
	"github.com/kubeha/kubeha/state/observe"
)

// cluster3 applies a three-master cluster and returns an executor for
// further work on it, with short etcd timeouts.
func cluster3(t *testing.T) (*env, *executor) {
	t.Helper()
	e := newEnv(t, sim.Options{}, 3)
	p, obs := e.plan(t)
	if err := Apply(context.Background(), p, e.options(t, obs)); err != nil {
		t.Fatal(err)
	}
	p, obs = e.plan(t)
	x, err := newExecutor(p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, BackupDir: t.TempDir(),
		EtcdTimeout: 2 * time.Second, Gate: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.etcd.close)
	var eps []string
	for _, m := range obs.Voters() {
		eps = append(eps, m.ClientURLs...)
	}
	if _, err := x.etcd.client(eps); err != nil {
		t.Fatal(err)
	}
	return e, x
}

// crashLowest crashes the etcd of the voter with the lowest member ID and
// returns its name: the one a sequential health check asked first.
func crashLowest(t *testing.T, e *env) string {
	t.Helper()
	obs, err := observe.Cluster(context.Background(), e.src, e.sp)
	if err != nil {
		t.Fatal(err)
	}
	voters := obs.Voters()
	slices.SortFunc(voters, func(a, b *state.Member) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	victim := voters[0].Instance
	zone := ""
	for _, in := range obs.Instances {
		if in.Name == victim {
			zone = in.Zone
		}
	}
	resp, err := http.Post(fmt.Sprintf("%s/sim/v1/projects/%s/zones/%s/instances/%s/crash", e.srv.URL(), e.sp.Spec.GCE.Project, zone, victim), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("crash %s: %s", victim, resp.Status)
	}
	return victim
}

// TestHealth runs the health checks, gates, preflight, refusals and
// snapshots against one three-master cluster: first while it is healthy,
// then with its lowest-ID voter crashed.
func TestHealth(t *testing.T) {
	e, x := cluster3(t)
	t.Run("refusal names members", func(t *testing.T) { refusalNamesMembers(t, x) })
	t.Run("gate ends on cancel", func(t *testing.T) { gateEndsOnCancel(t, x) })
	t.Run("backup by revision", func(t *testing.T) { backupByRevision(t, x) })
	t.Run("memberID returns lookup errors", func(t *testing.T) { memberIDReturnsLookupErrors(t, e, x) })
	// A plan made while all three are healthy.
	e.sp.Spec.Masters.Replicas = 1
	p, obs := e.plan(t)
	victim := crashLowest(t, e)
	t.Run("each member on its own", func(t *testing.T) { healthCountsEachMemberOnItsOwn(t, x, victim) })
	t.Run("gate stops on another voter down", func(t *testing.T) { gateStopsOnAnotherVoterDown(t, x, victim) })
	t.Run("preflight refuses", func(t *testing.T) { preflightRefusesWhenAVoterIsDown(t, e, p, obs, victim) })
}

// faults sets the emulator's injected API faults.
func faults(t *testing.T, e *env, body string) {
	t.Helper()
	resp, err := http.Post(e.srv.URL()+"/sim/v1/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("faults %s: %s", body, resp.Status)
	}
}

// healthCountsEachMemberOnItsOwn: with the lowest-ID voter crashed,
// the other two are healthy, and only the crashed one is named down. The
// check takes about one member's timeout, not the sum.
func healthCountsEachMemberOnItsOwn(t *testing.T, x *executor, victim string) {
	ctx := context.Background()

	t0 := time.Now()
	h, err := x.etcd.check(ctx, 2*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3500*time.Millisecond {
		t.Errorf("check took %s: members were asked one after another", d)
	}
	if h.healthyVoters() != 2 || len(h.voters()) != 3 {
		t.Fatalf("want 2 of 3 voters healthy: %s", h)
	}
	down := h.downVoters()
	if len(down) != 1 || !strings.HasPrefix(down[0], victim+" (") {
		t.Fatalf("down: %v, want only %s: %s", down, victim, h)
	}
	if ms := h.membership(); ms.FaultTolerance != 0 || ms.Quorum != 2 {
		t.Errorf("measured membership %+v", ms)
	}

	// A gate that wants 2 passes at once; one that wants 3 names only the
	// crashed member; one that wants more voters than exist says so.
	t0 = time.Now()
	if _, err := x.etcd.waitHealthy(ctx, 2, 0, nil); err != nil {
		t.Fatalf("gate for 2 healthy voters: %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("gate for 2 of 2 healthy voters took %s", d)
	}
	x.etcd.gate = 3 * time.Second
	var reports []string
	_, err = x.etcd.waitHealthy(ctx, 3, 0, func(s string) { reports = append(reports, s) })
	if err == nil || !strings.Contains(err.Error(), "2 of 3 voters healthy") || !strings.Contains(err.Error(), "down: "+victim+" (") {
		t.Fatalf("gate for 3: %v", err)
	}
	if strings.Count(err.Error(), "down: ") != 1 || strings.Count(err.Error(), " (no answer") > 1 {
		t.Errorf("gate error names more than the crashed member: %v", err)
	}
	if len(reports) == 0 || !strings.Contains(reports[0], "down: "+victim) {
		t.Errorf("the gate did not say what it waits for: %q", reports)
	}
	_, err = x.etcd.waitHealthy(ctx, 4, 0, nil)
	if err == nil || !strings.Contains(err.Error(), "etcd has only 3 voters, 4 wanted") {
		t.Fatalf("gate for 4 of 3 voters: %v", err)
	}
}

// gateStopsOnAnotherVoterDown: a gate whose own member is fine but
// which misses a voter that went down stops after downGrace, naming it.
func gateStopsOnAnotherVoterDown(t *testing.T, x *executor, victim string) {
	h, err := x.etcd.check(context.Background(), 2*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	var subject uint64
	for _, m := range h.Members {
		if m.Name != victim {
			subject = m.ID
		}
	}
	x.etcd.gate = time.Minute
	t0 := time.Now()
	_, err = x.etcd.waitHealthy(context.Background(), 3, subject, nil)
	if err == nil || !strings.Contains(err.Error(), victim+" (") || !strings.Contains(err.Error(), "went down during the step") {
		t.Fatalf("gate: %v", err)
	}
	if d := time.Since(t0); d > downGrace+5*time.Second {
		t.Errorf("gate took %s to stop", d)
	}
}

// gateEndsOnCancel: a gate that cannot pass ends soon after its
// context does.
func gateEndsOnCancel(t *testing.T, x *executor) {
	x.etcd.gate = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	t0 := time.Now()
	_, err := x.etcd.waitHealthy(ctx, 5, 0, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("gate after cancel: %v", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("gate ended %s after it began, 300ms after cancel", d)
	}
}

// preflightRefusesWhenAVoterIsDown: a plan made while all three were
// healthy is not carried out once a voter is down: the first membership
// change fails at once, naming it, and nothing is changed.
func preflightRefusesWhenAVoterIsDown(t *testing.T, e *env, p *planner.Plan, obs *state.Cluster, victim string) {
	t0 := time.Now()
	err := Apply(context.Background(), p, e.options(t, obs))
	if err == nil || !strings.Contains(err.Error(), "preflight") || !strings.Contains(err.Error(), "down: "+victim+" (") ||
		!strings.Contains(err.Error(), "Nothing was changed") {
		t.Fatalf("apply with a voter down since the plan: %v", err)
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("preflight took %s", d)
	}
	if n := len(e.srv.Members()); n != 3 {
		t.Errorf("%d members left, want 3: something was removed", n)
	}
}

// refusalNamesMembers: etcd's "unhealthy cluster" comes with the
// members as they are.
func refusalNamesMembers(t *testing.T, x *executor) {
	err := x.refusal(context.Background(), fmt.Errorf("remove etcd member 1: %w", rpctypes.ErrGRPCUnhealthy))
	if err == nil || !strings.Contains(err.Error(), "unhealthy cluster") || !strings.Contains(err.Error(), "etcd members now: 3 of 3 voters healthy (exe-master") {
		t.Fatalf("refusal: %v", err)
	}
	other := errors.New("permission denied")
	if got := x.refusal(context.Background(), other); got != other {
		t.Errorf("another error was changed: %v", got)
	}
}

// memberIDReturnsLookupErrors: a member looked up by its address does
// not pass for "no member" when the address cannot be read.
func memberIDReturnsLookupErrors(t *testing.T, e *env, x *executor) {
	faults(t, e, `{"rate":1,"codes":[403]}`)
	defer faults(t, e, `{"rate":0}`)
	_, err := x.memberID(context.Background(), &planner.Step{Action: planner.RemoveMember, Replica: "exe-master-zzz", Target: "exe-master-zzz"})
	if err == nil || !strings.Contains(err.Error(), "exe-master-zzz") {
		t.Fatalf("memberID with the address unreadable: %v", err)
	}
}

var revRe = regexp.MustCompile(`-r(\d+)\.db$`)

// backupByRevision: before a removal a snapshot is taken whenever the
// revision moved since the last one; before a disk deletion always.
func backupByRevision(t *testing.T, x *executor) {
	ctx := context.Background()
	snaps := func() []string {
		files, _ := filepath.Glob(filepath.Join(x.o.BackupDir, "*.db"))
		return files
	}
	if err := x.backup(ctx, &planner.Step{}, "before-remove-a", false, ""); err != nil {
		t.Fatal(err)
	}
	if err := x.backup(ctx, &planner.Step{}, "before-remove-b", false, ""); err != nil {
		t.Fatal(err)
	}
	if n := len(snaps()); n != 1 {
		t.Fatalf("%d snapshots, want 1: the revision did not move", n)
	}
	cli, _ := x.etcd.client(nil)
	if _, err := cli.Put(ctx, "/moved", "1"); err != nil {
		t.Fatal(err)
	}
	if err := x.backup(ctx, &planner.Step{}, "before-remove-c", false, ""); err != nil {
		t.Fatal(err)
	}
	if err := x.backup(ctx, &planner.Step{}, "before-delete-exe-master-pd", true, "exe-master"); err != nil {
		t.Fatal(err)
	}
	files := snaps()
	if len(files) != 3 {
		t.Fatalf("snapshots %v, want 3", files)
	}
	var revs []int
	for _, f := range files {
		m := revRe.FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("snapshot %s does not name its revision", f)
		}
		r, _ := strconv.Atoi(m[1])
		revs = append(revs, r)
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
			t.Errorf("snapshot %s: %v", f, err)
		}
	}
	if !(revs[0] < revs[1] && revs[1] == revs[2]) {
		t.Errorf("revisions %v: want the put between the first two", revs)
	}
}
