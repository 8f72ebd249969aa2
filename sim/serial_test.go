package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/metadata"
)

// TestBootFailureOnSerialPort: an instance named in bootFailures runs, its
// member never starts, and its serial port 1 says the startup script
// failed, as the guest agent writes it on GCE; the others of its static
// initial cluster form the cluster without it. Reading on from where the
// last read ended gives only what came since.
func TestBootFailureOnSerialPort(t *testing.T) {
	s, c := startSim(t, Options{})
	postAdmin(t, s, "/sim/v1/faults", `{"rate":0,"bootFailures":["m3"]}`)
	ms := []master{reserve(t, c, "m1", zoneB), reserve(t, c, "m2", zoneC), reserve(t, c, "m3", zoneD)}
	cluster := initialCluster("http", ms...)
	for _, m := range ms {
		boot(t, c, m, "http", cluster, metadata.StateNew, nil)
	}
	cli := etcdClient(t, nil, ms[0].clientURL("http"), ms[1].clientURL("http"))
	eventually(t, 20*time.Second, "the cluster of m1 and m2", func() error { return status(cli, ms[0].clientURL("http")) })
	out, err := c.Instances.GetSerialPortOutput(project, zoneD, "m3").Port(1).Do()
	if err != nil || !strings.Contains(out.Contents, "startup-script exit status 1") || out.Next != int64(len(out.Contents)) {
		t.Fatalf("serial port of m3: %+v, %v", out, err)
	}
	again, err := c.Instances.GetSerialPortOutput(project, zoneD, "m3").Port(1).Start(out.Next).Do()
	if err != nil || again.Contents != "" || again.Start != out.Next {
		t.Errorf("serial port of m3 from %d: %+v, %v", out.Next, again, err)
	}
	if ok, err := c.Instances.GetSerialPortOutput(project, zoneB, "m1").Port(1).Do(); err != nil || strings.Contains(ok.Contents, "exit status 1") {
		t.Errorf("serial port of m1, which booted: %+v, %v", ok, err)
	}
	for _, m := range s.Members() {
		if strings.HasSuffix(m.Instance, "/m3") && (m.State != "failed" || !strings.Contains(m.Error, "failed to boot")) {
			t.Errorf("member of m3: %+v", m)
		}
	}
	if _, err := c.Instances.GetSerialPortOutput(project, zoneD, "nope").Do(); err == nil {
		t.Error("the serial port of an instance that does not exist")
	}
}
