package habound

import (
	"testing"
	"time"
)

// Latencies is what each operation costs ("boot" is a VM's, from RUNNING to
// its etcd started).
type Latencies func(method string) time.Duration

// FromProfile is a latency profile (sim.Profile) scaled by timeScale.
func FromProfile(profile map[string]time.Duration, timeScale float64) Latencies {
	return func(method string) time.Duration {
		d, ok := profile[method]
		if !ok {
			d = profile["default"]
		}
		return time.Duration(float64(d) * timeScale)
	}
}

// Apply is the longest chain that GCE's and etcd's rules force on taking a
// cluster from `from` masters (0 or 3 and more) to `to`. GCE runs
// operations on independent resources at once; an instance needs its
// internal address, its disk and (for its certificates) the static IP
// first; a target pool needs its health check, a forwarding rule its pool
// and the static IP, a pool entry its pool and instance; the masters' etcd
// peers talk once the etcd firewall exists. etcd: a new cluster forms once
// a quorum of members started from one static initial cluster has booted;
// a joining member's learner is added before its VM boots (membership
// changes take milliseconds: that they go one at a time costs nothing
// here), and it is promoted once it runs.
func Apply(l Latencies, from, to int) time.Duration {
	addr := max(l("addresses.insert"), l("disks.insert"))
	vmUp := addr + l("instances.insert")
	members := vmUp + l("boot")
	pool := vmUp + l("targetPools.addInstance")
	if from == 0 {
		lb := l("httpHealthChecks.insert") + l("targetPools.insert")
		pool = max(pool, lb+l("targetPools.addInstance"))
		members = max(members, l("firewalls.insert"))
		return max(members, pool, lb+l("forwardingRules.insert"))
	}
	return max(members, pool)
}

// Serving is Apply and then what the load balancer needs before it sends
// a new master traffic: passes of its health check (healthy after
// healthyThreshold answers, interval apart, the first an interval after the
// master is added). The API server's own start is not in a latency
// profile: a benchmark reports it as the difference.
func Serving(l Latencies, from, to int, interval time.Duration, healthyThreshold int) time.Duration {
	return Apply(l, from, to) + time.Duration(healthyThreshold)*interval
}

// Report reports a time a benchmark measured beside its bound, as
// NAME-s, NAME-bound-s and NAME/bound.
func Report(b *testing.B, name string, got, bound time.Duration) {
	b.ReportMetric(got.Seconds(), name+"-s")
	b.ReportMetric(bound.Seconds(), name+"-bound-s")
	b.ReportMetric(got.Seconds()/bound.Seconds(), name+"/bound")
}
