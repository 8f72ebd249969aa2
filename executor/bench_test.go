package executor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
)

// stepLatency is how long a step takes on the gce profile: the latencies
// of the operations it waits for, and the VM's boot for the steps that wait
// for a member to run (a bootstrap master, a promotion).
func stepLatency(profile map[string]time.Duration, timeScale float64, s *planner.Step) time.Duration {
	l := func(method string) time.Duration {
		d, ok := profile[method]
		if !ok {
			d = profile["default"]
		}
		return time.Duration(float64(d) * timeScale)
	}
	var total time.Duration
	for _, method := range stepMethods[s.Action] {
		total += l(method)
	}
	return total
}

// stepMethods are the API methods (and "boot", the VM's) a step of each
// action waits for on the gce profile; the bootstrap master waits until its
// etcd is healthy, a joining one until its member runs: both include the
// VM's boot.
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
// dependency graph: no executor can finish sooner.
func criticalPath(p *planner.Plan, latency func(*planner.Step) time.Duration) time.Duration {
	finish := map[string]time.Duration{}
	var longest time.Duration
	for _, s := range p.Steps {
		var start time.Duration
		for _, d := range s.DependsOn {
			start = max(start, finish[d])
		}
		finish[s.ID] = start + latency(s)
		longest = max(longest, finish[s.ID])
	}
	return longest
}

// BenchmarkApplyZeroToFive applies a 5-master cluster to an empty project on
// the gce latency profile, time scaled, and reports the wall time against the
// plan's critical-path bound, and the API requests made. The emulator scales
// GCE's latencies but not etcd's own timing (its elections, a member's join),
// so the smaller the scale the more of the wall time etcd takes: it runs at
// 1/20 and at 1/5 of real time.
func BenchmarkApplyZeroToFive(b *testing.B) {
	for _, scale := range []float64{0.05, 0.2} {
		b.Run(fmt.Sprintf("scale=%g", scale), func(b *testing.B) { benchApply(b, scale) })
	}
}

func benchApply(b *testing.B, timeScale float64) {
	profile, err := sim.Profile("gce")
	if err != nil {
		b.Fatal(err)
	}
	var wall, bound time.Duration
	var requests, steps int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// etcd with its default timing, as on GCE (see sim.Options.EtcdTickMs).
		e := newEnv(b, sim.Options{Profile: "gce", TimeScale: timeScale, EtcdTickMs: 100, EtcdElectionMs: 1000}, 5)
		p, obs := e.plan(b)
		bound = criticalPath(p, func(s *planner.Step) time.Duration { return stepLatency(profile, timeScale, s) })
		steps = len(p.Steps)
		e.srv.ResetRequests()
		b.StartTimer()
		t0 := time.Now()
		if err := Apply(context.Background(), p, Options{Compute: e.src.Compute, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Spec: e.sp, Observed: obs, PKI: e.pki, Parallelism: 8}); err != nil {
			b.Fatal(err)
		}
		wall = time.Since(t0)
		b.StopTimer()
		requests = e.srv.Requests().Total
		if again, _ := e.plan(b); !again.NoChanges {
			b.Fatalf("not converged:\n%s", planner.Format(again))
		}
	}
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(bound.Seconds(), "bound-s")
	b.ReportMetric(wall.Seconds()/bound.Seconds(), "wall/bound")
	b.ReportMetric(float64(requests), "requests")
	b.ReportMetric(float64(requests)/float64(steps), "requests/step")
}
