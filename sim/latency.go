package sim

import (
	"fmt"
	"time"
)

// Latency profiles: how long each method's operation takes to reach DONE,
// and how long a VM takes from RUNNING to a started etcd ("boot").
//
// "fast" is the default: every operation takes 10ms and members boot at
// once, so tests and demos run quickly while still seeing PENDING/RUNNING.
//
// "gce" holds typical durations of the real API. They are estimates, not
// measurements of ours: instance creation is documented by Google as taking
// "a few seconds to a minute"; the Compute Engine operation guides show disk,
// address and firewall operations completing in seconds; the Kubernetes HA-masters guide
// ("Set up High-Availability Kubernetes Masters") says load balancer creation
// and removal "may take some time (~20 minutes) to propagate", which happens
// after the forwarding-rule operation is DONE, so it is not part of an
// operation's latency here. Scale the profile with TimeScale (0.05 runs it at
// 1/20 of real time) for benchmarks.
var profiles = map[string]map[string]time.Duration{
	"fast": {
		"default": 10 * time.Millisecond,
		"boot":    0,
	},
	"gce": {
		"default":                      5 * time.Second,
		"boot":                         20 * time.Second, // guest OS boot and startup script until etcd runs
		"instances.insert":             15 * time.Second,
		"instances.delete":             40 * time.Second,
		"instances.stop":               30 * time.Second,
		"instances.start":              15 * time.Second,
		"instances.setMetadata":        3 * time.Second,
		"instances.setLabels":          3 * time.Second,
		"instances.addAccessConfig":    6 * time.Second,
		"instances.deleteAccessConfig": 6 * time.Second,
		"disks.insert":                 3 * time.Second,
		"disks.delete":                 3 * time.Second,
		"addresses.insert":             3 * time.Second,
		"addresses.delete":             3 * time.Second,
		"targetPools.insert":           5 * time.Second,
		"targetPools.delete":           5 * time.Second,
		"targetPools.addInstance":      4 * time.Second,
		"targetPools.removeInstance":   4 * time.Second,
		"httpHealthChecks.insert":      5 * time.Second,
		"httpHealthChecks.delete":      5 * time.Second,
		"forwardingRules.insert":       12 * time.Second,
		"forwardingRules.delete":       12 * time.Second,
		"firewalls.insert":             10 * time.Second,
		"firewalls.patch":              10 * time.Second,
		"firewalls.delete":             10 * time.Second,
	},
}

// ProfileNames lists the latency profiles.
func ProfileNames() []string { return []string{"fast", "gce"} }

// Profile returns a copy of a named latency profile ("" is "fast").
func Profile(name string) (map[string]time.Duration, error) {
	if name == "" {
		name = "fast"
	}
	p, ok := profiles[name]
	if !ok {
		return nil, fmt.Errorf("unknown latency profile %q: use fast or gce", name)
	}
	out := make(map[string]time.Duration, len(p))
	for k, v := range p {
		out[k] = v
	}
	return out, nil
}
