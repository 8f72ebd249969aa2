package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/habound"
	"github.com/kubeha/kubeha/sim"
)

// BenchmarkTimeToHA applies 0 -> 3, 0 -> 5 and 3 -> 5 masters running the
// whole control plane (the real etcd and Kubernetes binaries, booted by
// the startup script) with the built kubeha against `kubeha sim serve` on
// the gce latency profile at 1/5 of real time, and measures the apply and
// the time until https://STATIC_IP/readyz answers through the load
// balancer with every master healthy in its pool. Beside them: the bound
// no plan can beat (habound), for the apply and for serving (the apply and
// two passes of the load balancer's health check, 2 s apart: the health
// check's timing is GCE's own, not scaled). What serving takes beyond its
// bound is, mostly, the API server's own start.
//
//	go test -run '^$' -bench BenchmarkTimeToHA -benchtime 1x ./e2e/
func BenchmarkTimeToHA(b *testing.B) {
	for _, c := range []struct{ from, to int }{{0, 3}, {0, 5}, {3, 5}} {
		b.Run(fmt.Sprintf("%dto%d", c.from, c.to), func(b *testing.B) { benchTimeToHA(b, c.from, c.to) })
	}
}

func benchTimeToHA(b *testing.B, from, to int) {
	const scale = 0.2
	profile, err := sim.Profile("gce")
	if err != nil {
		b.Fatal(err)
	}
	l := habound.FromProfile(profile, scale)
	var applied, serving time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := newControlPlaneCluster(b, fmt.Sprintf("ha%d%d", from, to), "--latency-profile", "gce", "--time-scale", fmt.Sprint(scale))
		if from > 0 {
			c.write(from, false)
			c.apply()
			// A running cluster, not one just made: etcd refuses a member
			// add until its leader has been connected to a quorum for 5 s.
			time.Sleep(6 * time.Second)
		}
		c.write(to, false)
		b.StartTimer()
		t0 := time.Now()
		c.apply()
		applied = time.Since(t0)
		b.StopTimer()
		api := c.adminAPI(b)
		s := c.status()
		svc := c.compute(b)
		for {
			code, _ := api.viaLB("GET", "/readyz", "")
			healthy := code == 200
			for _, r := range s.Replicas {
				healthy = healthy && c.poolHealth(svc, r.Zone, r.Name) == "HEALTHY"
			}
			if healthy {
				break
			}
			if time.Since(t0) > 10*time.Minute {
				b.Fatalf("not serving through the load balancer with %d healthy masters after 10 minutes", to)
			}
			time.Sleep(100 * time.Millisecond)
		}
		serving = time.Since(t0)
	}
	bound := habound.Apply(l, from, to)
	servingBound := habound.Serving(l, from, to, 2*time.Second, 2)
	habound.Report(b, "apply", applied, bound)
	habound.Report(b, "serving", serving, servingBound)
}
