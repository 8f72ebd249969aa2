package sim

import (
	"testing"
	"time"

	"github.com/kubeha/kubeha/metadata"
)

// TestStopMemberThatNeverBecameReady: a member that cannot reach a quorum
// never becomes ready; deleting its VM and closing the emulator must not hang.
func TestStopMemberThatNeverBecameReady(t *testing.T) {
	s, c := startSim(t, Options{})
	m1, m2 := reserve(t, c, "m1", zoneB), reserve(t, c, "m2", zoneC)
	// m1 starts a two-member cluster whose other member never boots: no quorum.
	boot(t, c, m1, "http", initialCluster("http", m1, m2), metadata.StateNew, nil)
	time.Sleep(time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		op, err := c.Instances.Delete(project, zoneB, "m1").Do()
		if err == nil {
			wait(t, c, op)
		}
		s.Close()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("stopping a member that never became ready hung")
	}
}
