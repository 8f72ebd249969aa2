package executor

import (
	"context"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
	"github.com/kubeha/kubeha/state/observe"
)

// TestEveryActionHasAHandler: the executor's table has a handler for each
// action of the planner's table, and for nothing else.
func TestEveryActionHasAHandler(t *testing.T) {
	for _, a := range planner.Actions() {
		if handlers[a] == nil {
			t.Errorf("action %s has no handler in the executor's table (executor/handlers.go)", a)
		}
	}
	for a := range handlers {
		if !a.Known() {
			t.Errorf("the executor handles %s, which the planner does not know", a)
		}
	}
}

// actionsSeen records the actions of the steps that ran.
type actionsSeen struct {
	NoHooks
	mu   sync.Mutex
	seen map[planner.Action]bool
}

func (a *actionsSeen) StepFinished(e Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.Err == nil {
		a.seen[e.Step.Action] = true
	}
}

// TestEveryStepKindTwice runs every kind of step against the emulator with
// each step's handler run a second time right after it succeeded, as an
// apply that was interrupted and run again would: the second run must
// succeed and change nothing, so that the cluster still converges. The
// plans: a bootstrap; the scale-up to 3 masters; drift made out of band (a firewall, the
// health check, a stopped master, a master without kubeha's labels);
// certificates due for renewal; a replacement of the etcd leader; the
// scale-down to one master; a destroy; the bootstrap of three at once; and
// a restore of them from a snapshot after two were lost. Meanwhile one API request in ten
// fails after the emulator acted (its reply lost, as after a timeout or a
// 5xx from GCE), so every call is also retried against the state it made.
func TestEveryStepKindTwice(t *testing.T) {
	e := newEnv(t, sim.Options{}, 1)
	seen := &actionsSeen{seen: map[planner.Action]bool{}}
	ctx := context.Background()
	apply := func(what string, opts planner.Options, edit func(*state.Cluster)) {
		t.Helper()
		obs, err := observe.Cluster(ctx, e.src, e.sp)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(obs)
		}
		p, err := planner.ComputeWith(e.sp, obs, opts)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		faults(t, e, `{"rate":0.1,"codes":[503],"after":true}`)
		err = Apply(ctx, p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, BackupDir: t.TempDir(), Hooks: seen, twice: true})
		faults(t, e, `{"rate":0}`)
		if err != nil {
			t.Fatalf("%s, every step twice, one request in ten failing after the emulator acted: %v\n%s", what, err, planner.Format(p))
		}
		after, err := observe.Cluster(ctx, e.src, e.sp)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := planner.ComputeWith(e.sp, after, planner.Options{Addons: opts.Addons}); err != nil || !again.NoChanges {
			t.Fatalf("%s did not converge: %v\n%s", what, err, planner.Format(again))
		}
	}
	apply("bootstrap of 1 master", planner.Options{}, nil)
	e.sp.Spec.Masters.Replicas = 3
	apply("scale up to 3", planner.Options{}, nil)

	c, project := e.src.Compute, e.sp.Spec.GCE.Project
	wait := func(op *compute.Operation, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		for op.Status != "DONE" {
			if op.Zone != "" {
				op, err = c.ZoneOperations.Wait(project, path.Base(op.Zone), op.Name).Do()
			} else if op.Region != "" {
				op, err = c.RegionOperations.Wait(project, path.Base(op.Region), op.Name).Do()
			} else {
				op, err = c.GlobalOperations.Wait(project, op.Name).Do()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	fw, _ := c.Firewalls.Get(project, "exe-master-etcd").Do()
	fw.Allowed[0].Ports = []string{"2379-2380"}
	wait(c.Firewalls.Patch(project, fw.Name, fw).Do())
	hc, _ := c.HttpHealthChecks.Get(project, "exe-master-hc").Do()
	hc.Port, hc.RequestPath = 8080, "/healthz"
	wait(c.HttpHealthChecks.Update(project, hc.Name, hc).Do())
	obs, _ := observe.Cluster(ctx, e.src, e.sp)
	var leader, other *state.Instance
	for _, r := range obs.Replicas() {
		if r.Member != nil && r.Member.Leader {
			leader = r.Instance
		} else if other == nil {
			other = r.Instance
		}
	}
	in, _ := c.Instances.Get(project, other.Zone, other.Name).Do()
	wait(c.Instances.SetLabels(project, other.Zone, other.Name, &compute.InstancesSetLabelsRequest{Labels: map[string]string{},
		LabelFingerprint: in.LabelFingerprint}).Do())
	wait(c.Instances.Stop(project, other.Zone, other.Name).Do())
	apply("drift made out of band", planner.Options{}, nil)

	// Every certificate due: observed as if a year from now.
	apply("certificates due", planner.Options{}, func(o *state.Cluster) { o.ObservedAt = time.Now().Add(400 * 24 * time.Hour) })
	apply("replacement of the leader "+leader.Name, planner.Options{Replace: []string{leader.Name}}, nil)
	e.sp.Spec.Access.SourceRanges = []string{"10.128.0.5/32"}
	apply("access from a management VM", planner.Options{}, nil)
	e.sp.Spec.Access.SourceRanges = nil
	apply("no access named", planner.Options{}, nil)
	e.sp.Spec.Addons.CheckInterval.Duration = 30 * time.Second
	addons, err := AddonsDigest(e.sp)
	if err != nil {
		t.Fatal(err)
	}
	apply("spec.addons.checkInterval changed", planner.Options{Addons: addons}, nil)
	list, err := c.Instances.AggregatedList(project).Do()
	if err != nil {
		t.Fatal(err)
	}
	for _, scoped := range list.Items {
		for _, in := range scoped.Instances {
			for _, it := range in.Metadata.Items {
				if it.Key == metadata.KeyKubeEnv && !strings.Contains(*it.Value, "ADDON_CHECK_INTERVAL_SEC: '30'") {
					t.Errorf("%s: kube-env after the add-ons update has no 30 s interval:\n%s", in.Name, *it.Value)
				}
			}
		}
	}
	// spec.masters.replaceBy: disk: a master's VM made again on its disk
	// (apply --replace), then one deleted out of band: every member keeps
	// its ID.
	memberIDs := func() map[string]uint64 {
		t.Helper()
		o, err := observe.Cluster(ctx, e.src, e.sp)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]uint64{}
		for _, m := range o.Etcd.Members {
			ids[m.Name] = m.ID
		}
		return ids
	}
	ids := memberIDs()
	e.sp.Spec.Masters.ReplaceBy = spec.ReplaceByDisk
	obs, _ = observe.Cluster(ctx, e.src, e.sp)
	moved, gone := obs.Instances[0], obs.Instances[1]
	apply("replacement of "+moved.Name+" by moving its disk", planner.Options{Replace: []string{moved.Name}, Addons: addons}, nil)
	wait(c.Instances.Delete(project, gone.Zone, gone.Name).Do())
	apply("VM "+gone.Name+" deleted out of band, made again on its disk", planner.Options{Addons: addons}, nil)
	if got := memberIDs(); !maps.Equal(got, ids) {
		t.Errorf("member IDs after the disk moves: %v, before: %v", got, ids)
	}
	e.sp.Spec.Masters.ReplaceBy = spec.ReplaceByMember
	e.sp.Spec.Masters.Replicas = 1
	apply("scale down to 1", planner.Options{}, nil)

	// kubeha destroy: the final snapshot, then everything of the cluster.
	obs, err = observe.Cluster(ctx, e.src, e.sp)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.Destroy(e.sp, obs, planner.DestroyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	backups := t.TempDir()
	faults(t, e, `{"rate":0.1,"codes":[503],"after":true}`)
	err = Apply(ctx, p, Options{Compute: c, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, BackupDir: backups, Hooks: seen, twice: true})
	faults(t, e, `{"rate":0}`)
	if err != nil {
		t.Fatalf("destroy, every step twice: %v\n%s", err, planner.Format(p))
	}
	if after, err := observe.Cluster(ctx, e.src, e.sp); err != nil || !after.Empty() {
		t.Errorf("after destroy: %v\n%s", err, planner.Format(p))
	}
	if snaps, _ := filepath.Glob(filepath.Join(backups, "*-exe-before-destroy-r*.db")); len(snaps) != 1 {
		t.Errorf("final snapshots: %v", snaps)
	}

	// A new cluster of three: every member at once, one static initial
	// cluster, then the wait for its quorum.
	e.sp.Spec.Masters.Replicas = 3
	apply("bootstrap of 3 masters at once", planner.Options{}, nil)

	// kubeha restore after two of the three masters and their disks are
	// gone: the snapshot through Cloud Storage, every member restoring it.
	restoreEveryStepTwice(t, e, seen)

	// Every insert carried a requestId, so a retried one cannot create
	// twice; run a second time, each came back with its first operation.
	if missing := e.srv.Requests().InsertsWithoutRequestID; len(missing) > 0 {
		t.Errorf("inserts without a requestId: %v", missing)
	}
	for _, a := range planner.Actions() {
		// delete-node speaks to the Kubernetes API, which this emulator's
		// etcd-only masters do not serve: e2e's TestWorkloadsOutliveAMaster
		// runs it, against the real control plane, through 5 -> 3 masters.
		if !seen.seen[a] && a != planner.DeleteNode {
			t.Errorf("no %s step ran: this test no longer covers every kind of step", a)
		}
	}
	if t.Failed() {
		var got []string
		for a := range seen.seen {
			got = append(got, string(a))
		}
		slices.Sort(got)
		t.Logf("ran: %v", got)
	}
}

// TestRenewalKeepsForeignMetadata: a renewal rewrites the metadata kubeha
// owns and keeps every other key (ssh-keys, enable-oslogin, keys other
// tools set), since setMetadata replaces the whole set. The foreign keys
// are added with gcloud compute instances add-metadata where gcloud is
// installed.
func TestRenewalKeepsForeignMetadata(t *testing.T) {
	e := appliedEnv(t, 1)
	ctx := context.Background()
	c, project := e.src.Compute, e.sp.Spec.GCE.Project
	in, err := c.Instances.Get(project, "europe-west1-b", "exe-master").Do()
	if err != nil {
		t.Fatal(err)
	}
	foreign := map[string]string{"ssh-keys": "alice:ssh-ed25519 AAAA alice", "enable-oslogin": "TRUE", "other-tool": "kept"}
	if gcloud, err := exec.LookPath("gcloud"); err == nil {
		// As an operator would: gcloud compute instances add-metadata.
		cfg := t.TempDir()
		for _, args := range [][]string{
			{"config", "set", "api_endpoint_overrides/compute", e.srv.URL() + "/compute/v1/"},
			{"config", "set", "auth/disable_credentials", "true"},
			{"compute", "instances", "add-metadata", "exe-master", "--project", project, "--zone", "europe-west1-b",
				"--metadata", "ssh-keys=" + foreign["ssh-keys"] + ",enable-oslogin=TRUE,other-tool=kept"},
		} {
			cmd := exec.Command(gcloud, append(args, "--quiet")...)
			cmd.Env = append(os.Environ(), "CLOUDSDK_CONFIG="+cfg)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("gcloud %v: %v\n%s", args, err, out)
			}
		}
	} else {
		items := in.Metadata.Items
		for k, v := range foreign {
			items = append(items, &compute.MetadataItems{Key: k, Value: &v})
		}
		op, err := c.Instances.SetMetadata(project, "europe-west1-b", "exe-master", &compute.Metadata{Items: items, Fingerprint: in.Metadata.Fingerprint}).Do()
		if err != nil {
			t.Fatal(err)
		}
		c.ZoneOperations.Wait(project, "europe-west1-b", op.Name).Do()
	}
	p, obs := e.planRenewal(t)
	if err := Apply(ctx, p, e.options(t, obs)); err != nil {
		t.Fatal(err)
	}
	after, _ := c.Instances.Get(project, "europe-west1-b", "exe-master").Do()
	got := map[string]string{}
	for _, it := range after.Metadata.Items {
		if it.Value != nil {
			got[it.Key] = *it.Value
		}
	}
	for k, v := range foreign {
		if got[k] != v {
			t.Errorf("after the renewal %s = %q, want %q", k, got[k], v)
		}
	}
	before := map[string]string{}
	for _, it := range in.Metadata.Items {
		before[it.Key] = *it.Value
	}
	if got["kubeha-tls"] == "" || got["kubeha-tls"] == before["kubeha-tls"] {
		t.Error("the renewal did not write new certificates")
	}
}

// TestCreateWaitsForAResourceAnEarlierApplyStarted: an insert that finds
// its resource made by an earlier apply (409), whose insert still runs,
// returns once the resource can be used, not while it is being created:
// a disk still CREATING cannot be attached.
func TestCreateWaitsForAResourceAnEarlierApplyStarted(t *testing.T) {
	e := newEnv(t, sim.Options{}, 1)
	resp, err := http.Post(e.srv.URL()+"/sim/v1/latency", "application/json", strings.NewReader(`{"disks.insert":"2s","addresses.insert":"2s"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p, obs := e.plan(t)
	x, err := newExecutor(p, e.options(t, obs))
	if err != nil {
		t.Fatal(err)
	}
	c, project := e.src.Compute, e.sp.Spec.GCE.Project
	for _, s := range p.Steps {
		var get func() string
		switch s.Action {
		case planner.CreateDisk:
			// The earlier apply's insert, cut off before its operation ended.
			if _, err := c.Disks.Insert(project, s.Zone, &compute.Disk{Name: s.Target, SizeGb: 20}).Do(); err != nil {
				t.Fatal(err)
			}
			get = func() string { d, _ := c.Disks.Get(project, s.Zone, s.Target).Do(); return d.Status }
		case planner.ReserveAddress:
			if _, err := c.Addresses.Insert(project, e.sp.Spec.GCE.Region, &compute.Address{Name: s.Target, AddressType: "INTERNAL"}).Do(); err != nil {
				t.Fatal(err)
			}
			get = func() string { a, _ := c.Addresses.Get(project, e.sp.Spec.GCE.Region, s.Target).Do(); return a.Status }
		default:
			continue
		}
		if st := get(); st != "CREATING" && st != "RESERVING" {
			t.Fatalf("%s is %s right after its insert: the test needs it still being made", s.Target, st)
		}
		if err := x.do(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s.Target, err)
		}
		if st := get(); st != "READY" && st != "RESERVED" {
			t.Errorf("%s returned with %s %s, not ready", s.Action, s.Target, st)
		}
	}
}
