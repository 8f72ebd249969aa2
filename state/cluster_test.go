package state

import "testing"

// TestFingerprintIncludesHealth: a plan made while a voter was healthy is
// stale once it has failed, and the other way round.
func TestFingerprintIncludesHealth(t *testing.T) {
	c := func(healthy bool) *Cluster {
		return &Cluster{Name: "fp", Instances: []*Instance{{Name: "fp-master", Zone: "europe-west1-b", ID: 1, Status: "RUNNING"}},
			Etcd: Etcd{Reachable: true, ClusterID: 7, Members: []*Member{{ID: 0xa, Name: "fp-master", Instance: "fp-master", Healthy: healthy}}}}
	}
	if c(true).Fingerprint() == c(false).Fingerprint() {
		t.Fatal("the fingerprint does not change when a member's health does")
	}
	a, b := c(true), c(true)
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("the fingerprints of two equal states differ")
	}
}
