package executor

import (
	"context"
	"errors"
	"github.com/kubeha/kubeha/internal/gcpapi"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/sim/simtest"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
	"github.com/kubeha/kubeha/state/observe"
)

func testSpec(replicas int) *spec.Cluster { return simtest.Spec("exe", "p-exe", replicas) }

type env struct {
	srv   *sim.Server
	sp    *spec.Cluster
	pki   *pki.PKI
	src   observe.Source
	smURL string // where the masters read their keys
	apis  *gcpapi.Clients
}

func newEnv(t testing.TB, opts sim.Options, replicas int) *env {
	t.Helper()
	srv, _ := simtest.Start(t, opts)
	apis := simtest.Clients(t, srv)
	p, err := pki.Ensure(t.TempDir(), "exe")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, _ := p.ClientTLS()
	sp := testSpec(replicas)
	// The kubelet download the emulator serves.
	sp.Spec.Kubernetes.ReleaseURL = srv.Release().ReleaseURL
	sp.Spec.Kubernetes.KubeletSHA512 = srv.Release().KubeletSHA512[sp.Spec.Kubernetes.Version]
	return &env{srv: srv, sp: sp, pki: p, src: observe.Source{Compute: apis.Compute, IAM: apis.IAM, Secrets: apis.Secrets, EtcdTLS: tlsCfg}, smURL: apis.SecretManagerURL, apis: apis}
}

func (e *env) plan(t testing.TB) (*planner.Plan, *state.Cluster) {
	t.Helper()
	obs, err := observe.Cluster(context.Background(), e.src, e.sp)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planner.Compute(e.sp, obs)
	if err != nil {
		t.Fatal(err)
	}
	return p, obs
}

// recorder records progress; hooks are called from several goroutines.
type recorder struct {
	mu                sync.Mutex
	started, finished []string
	waiting           []string
	measured          []*state.Membership
}

func (r *recorder) StepWaiting(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiting = append(r.waiting, e.Label()+" "+e.Waiting)
}

func (r *recorder) StepStarted(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = append(r.started, e.Step.ID)
}

func (r *recorder) StepFinished(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = append(r.finished, e.Step.ID)
	r.measured = append(r.measured, e.Etcd)
}

func (r *recorder) counts() (started, finished int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.started), len(r.finished)
}

func TestApplyConvergesAndReportsProgress(t *testing.T) {
	e := newEnv(t, sim.Options{}, 3)
	p, obs := e.plan(t)
	rec := &recorder{}
	if err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, Hooks: rec, BackupDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if started, finished := rec.counts(); started != len(p.Steps) || finished != len(p.Steps) {
		t.Errorf("hooks saw %d starts and %d finishes of %d steps", started, finished, len(p.Steps))
	}
	again, _ := e.plan(t)
	if !again.NoChanges {
		t.Fatalf("not converged:\n%s", planner.Format(again))
	}
	// The etcd disks are pd-ssd (kube-up's MASTER_DISK_TYPE; the default).
	disks, err := e.src.Compute.Disks.AggregatedList(e.sp.Spec.GCE.Project).Do()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range disks.Items {
		for _, d := range l.Disks {
			if !strings.HasSuffix(d.Name, "-pd") {
				continue // a boot disk
			}
			n++
			if !strings.HasSuffix(d.Type, "/diskTypes/pd-ssd") {
				t.Errorf("disk %s is %s, want pd-ssd", d.Name, d.Type)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d disks, want 3", n)
	}
}

func TestApplyStopsAtAFailedStep(t *testing.T) {
	e := newEnv(t, sim.Options{}, 1)
	p, obs := e.plan(t)
	// Break the plan: the first master's disk is never created.
	var steps []*planner.Step
	disk := ""
	for _, s := range p.Steps {
		if s.Action == planner.CreateDisk {
			disk = s.ID
		}
	}
	for _, s := range p.Steps {
		if s.Action == planner.CreateDisk {
			continue
		}
		s.DependsOn = slicesDelete(s.DependsOn, disk)
		steps = append(steps, s)
	}
	p.Steps = steps
	rec := &recorder{}
	err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, Hooks: rec, Gate: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "create-instance") || !strings.Contains(err.Error(), "RESOURCE_NOT_FOUND") {
		t.Fatalf("apply of a broken plan: %v", err)
	}
	if started, finished := rec.counts(); started != finished {
		t.Errorf("steps started %d, finished %d: a step was abandoned", started, finished)
	}
}

func TestApplyInterruptedStopsAtSafePoint(t *testing.T) {
	e := newEnv(t, sim.Options{}, 3)
	p, obs := e.plan(t)
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{}
	hooks := &cancelAfter{recorder: rec, n: 3, cancel: cancel}
	err := Apply(ctx, p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, Hooks: hooks})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("apply after cancel: %v", err)
	}
	if started, finished := rec.counts(); started != finished || finished >= len(p.Steps) {
		t.Fatalf("started %d, finished %d of %d", started, finished, len(p.Steps))
	}
	// The next apply converges.
	p, obs = e.plan(t)
	if err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki}); err != nil {
		t.Fatal(err)
	}
	if again, _ := e.plan(t); !again.NoChanges {
		t.Fatalf("not converged:\n%s", planner.Format(again))
	}
}

type cancelAfter struct {
	*recorder
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) StepFinished(e Event) {
	c.recorder.StepFinished(e)
	if _, finished := c.counts(); finished == c.n {
		c.cancel()
	}
}

func slicesDelete(s []string, v string) []string {
	var out []string
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// options are the Options of an apply on this env, against obs.
func (e *env) options(t testing.TB, obs *state.Cluster) Options {
	return Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, BackupDir: t.TempDir()}
}

// planRenewal observes the cluster as if a year from now, when every
// certificate is due, and plans: it must be one renewal.
func (e *env) planRenewal(t *testing.T) (*planner.Plan, *state.Cluster) {
	t.Helper()
	obs, err := observe.Cluster(context.Background(), e.src, e.sp)
	if err != nil {
		t.Fatal(err)
	}
	obs.ObservedAt = time.Now().Add(400 * 24 * time.Hour)
	p, err := planner.Compute(e.sp, obs)
	if err != nil || len(p.Steps) != 1 || p.Steps[0].Action != planner.RenewCertificates {
		t.Fatalf("plan with the certificates due: %v\n%s", err, planner.Format(p))
	}
	return p, obs
}

// appliedEnv is an env whose cluster of replicas masters is applied.
func appliedEnv(t *testing.T, replicas int) *env {
	t.Helper()
	e := newEnv(t, sim.Options{}, replicas)
	p, obs := e.plan(t)
	if err := Apply(context.Background(), p, e.options(t, obs)); err != nil {
		t.Fatalf("apply %d master(s): %v", replicas, err)
	}
	return e
}
