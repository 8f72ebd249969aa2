package habound

import (
	"testing"
	"time"
)

// A profile whose numbers make each rule show: the VM chain (address,
// insert, boot) against the load balancer's (health check, pool, rule) and
// the etcd firewall.
func TestApply(t *testing.T) {
	p := map[string]time.Duration{"default": time.Second, "addresses.insert": 3 * time.Second, "disks.insert": 2 * time.Second,
		"instances.insert": 15 * time.Second, "boot": 20 * time.Second, "targetPools.addInstance": 4 * time.Second,
		"httpHealthChecks.insert": 5 * time.Second, "targetPools.insert": 5 * time.Second, "forwardingRules.insert": 12 * time.Second,
		"firewalls.insert": 10 * time.Second}
	l := FromProfile(p, 1)
	for _, c := range []struct {
		from, to int
		want     time.Duration
	}{{0, 5, 38 * time.Second}, {0, 3, 38 * time.Second}, {3, 5, 38 * time.Second}} {
		if got := Apply(l, c.from, c.to); got != c.want {
			t.Errorf("%d -> %d: %s, want %s", c.from, c.to, got, c.want)
		}
	}
	// A slow load balancer is the longest chain of a new cluster only.
	p["forwardingRules.insert"] = 40 * time.Second
	if got := Apply(l, 0, 3); got != 50*time.Second {
		t.Errorf("0 -> 3 with a 40 s forwarding rule: %s, want 50s (health check, pool, rule)", got)
	}
	if got := Apply(l, 3, 5); got != 38*time.Second {
		t.Errorf("3 -> 5 with a 40 s forwarding rule: %s, want 38s (the rule exists)", got)
	}
	if got := Apply(FromProfile(p, 0.2), 3, 5); got != 7600*time.Millisecond {
		t.Errorf("3 -> 5 at 1/5: %s, want 7.6s", got)
	}
	if got := Serving(l, 3, 5, 2*time.Second, 2); got != 42*time.Second {
		t.Errorf("serving 3 -> 5: %s, want 42s (two health-check passes 2 s apart)", got)
	}
}
