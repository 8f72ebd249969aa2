package executor

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/habound"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
)

// latencies are the emulator's latency profile, time scaled.
type latencies = habound.Latencies

// stepLatency is how long a step takes: the latencies of the operations it
// waits for, and the VM's boot for the steps that wait for a member to run
// (a bootstrap master, a joining one).
func stepLatency(l latencies, s *planner.Step) time.Duration {
	var total time.Duration
	for _, method := range stepMethods[s.Action] {
		total += l(method)
	}
	return total
}

// stepMethods are the API methods (and "boot", the VM's) a step of each
// action waits for on the gce profile.
var stepMethods = map[planner.Action][]string{
	planner.CreateFirewall:       {"firewalls.insert"},
	planner.ReserveStaticIP:      {"addresses.insert"},
	planner.ReserveAddress:       {"addresses.insert"},
	planner.CreateDisk:           {"disks.insert"},
	planner.CreateHealthCheck:    {"httpHealthChecks.insert"},
	planner.CreateTargetPool:     {"targetPools.insert"},
	planner.AddToPool:            {"targetPools.addInstance"},
	planner.CreateForwardingRule: {"forwardingRules.insert"},
	planner.DetachStaticIP:       {"instances.deleteAccessConfig", "instances.addAccessConfig"},
	planner.CreateInstance:       {"instances.insert", "boot"},
}

// criticalPath is the longest chain of step latencies through the plan's
// dependency graph: no executor of this plan can finish sooner. A plan that
// serialises work meets it by construction; habound.Apply does not depend
// on the plan.
func criticalPath(p *planner.Plan, l latencies) time.Duration {
	finish := map[string]time.Duration{}
	var longest time.Duration
	for _, s := range p.Steps {
		var start time.Duration
		for _, d := range s.DependsOn {
			start = max(start, finish[d])
		}
		finish[s.ID] = start + stepLatency(l, s)
		longest = max(longest, finish[s.ID])
	}
	return longest
}

// serial is the plan's steps one after another, as kube-up (and Cluster
// API's control plane) create masters: the sum of their latencies.
func serial(p *planner.Plan, l latencies) time.Duration {
	var total time.Duration
	for _, s := range p.Steps {
		total += stepLatency(l, s)
	}
	return total
}

// firstServing records when the first master was put behind the static IP.
type firstServing struct {
	NoHooks
	t0   time.Time
	mu   sync.Mutex
	when time.Duration
}

func (f *firstServing) StepFinished(e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.Err == nil && f.when == 0 && (e.Step.Action == planner.AddToPool || e.Step.Action == planner.CreateInstance && e.Step.Instance.StaticIP) {
		f.when = time.Since(f.t0)
	}
}

// BenchmarkApply applies a new cluster of 5 (at 1/5 and 1/20 of real time)
// and of 3 masters, and scales 3 to 5, on the emulator's gce latency
// profile, and reports the wall time against a bound that does not depend
// on the plan (habound.Apply), beside the plan's own critical path and its
// steps one after another (kube-up's way). The emulator scales GCE's
// latencies but not etcd's own timing (its elections, a member's catch-up),
// so the smaller the scale the more of the wall time etcd takes.
func BenchmarkApply(b *testing.B) {
	for _, c := range []struct {
		from, to int
		scale    float64
	}{{0, 5, 0.2}, {0, 5, 0.05}, {0, 3, 0.2}, {3, 5, 0.2}} {
		b.Run(fmt.Sprintf("%dto%d/scale=%g", c.from, c.to, c.scale), func(b *testing.B) { benchApply(b, c.from, c.to, c.scale) })
	}
}

func benchApply(b *testing.B, from, to int, timeScale float64) {
	profile, err := sim.Profile("gce")
	if err != nil {
		b.Fatal(err)
	}
	l := habound.FromProfile(profile, timeScale)
	var wall, critical, first time.Duration
	var requests, steps int
	var ser time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// etcd with its default timing, as on GCE (see sim.Options.EtcdTickMs).
		e := newEnv(b, sim.Options{Profile: "gce", TimeScale: timeScale, EtcdTickMs: 100, EtcdElectionMs: 1000}, max(from, 1))
		if from > 0 {
			e.sp.Spec.Masters.Replicas = from
			p, obs := e.plan(b)
			if err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki}); err != nil {
				b.Fatal(err)
			}
			// A running cluster, not one just made: etcd refuses a member
			// add until its leader has been connected to a quorum for 5 s.
			time.Sleep(6 * time.Second)
		}
		e.sp.Spec.Masters.Replicas = to
		p, obs := e.plan(b)
		critical, ser, steps = criticalPath(p, l), serial(p, l), len(p.Steps)
		e.srv.ResetRequests()
		hooks := &firstServing{}
		b.StartTimer()
		t0 := time.Now()
		hooks.t0 = t0
		// The API's rate limit (20 requests a second) is scaled with GCE's
		// time: the same requests per emulated second.
		if err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, Hooks: hooks,
			RateLimit: 20 / timeScale}); err != nil {
			b.Fatal(err)
		}
		wall = time.Since(t0)
		b.StopTimer()
		first = hooks.when
		requests = e.srv.Requests().Total
		if again, _ := e.plan(b); !again.NoChanges {
			b.Fatalf("not converged:\n%s", planner.Format(again))
		}
	}
	bound := habound.Apply(l, from, to)
	habound.Report(b, "wall", wall, bound)
	b.ReportMetric(critical.Seconds(), "plan-critical-s")
	b.ReportMetric(ser.Seconds(), "serial-s")
	b.ReportMetric(ser.Seconds()/wall.Seconds(), "serial/wall")
	if first > 0 {
		b.ReportMetric(first.Seconds(), "first-serving-s")
	}
	b.ReportMetric(float64(requests), "requests")
	b.ReportMetric(float64(requests)/float64(steps), "requests/step")
}
