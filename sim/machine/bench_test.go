package machine

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkMasterBoot boots one master with the whole control plane (the
// startup script, then etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler as processes of the real binaries) and reports the time
// from boot to a ready API (/readyz 200), and the resident memory of its
// processes once both leases are held.
func BenchmarkMasterBoot(b *testing.B) {
	bins := binaries(b)
	var ready time.Duration
	var rss int64
	for i := 0; i < b.N; i++ {
		m, p, ip := newMaster(b, bins)
		api := adminClient(b, p, "", 2*time.Second)
		get := func(path string) bool {
			resp, err := api.Get("https://" + ip + ":" + strconv.Itoa(443+m.PortOffset) + path)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}
		t0 := time.Now()
		if err := m.Boot(context.Background()); err != nil {
			b.Fatal(err)
		}
		for !get("/readyz") {
			if time.Since(t0) > 2*time.Minute {
				b.Fatal("kube-apiserver not ready after 2 minutes")
			}
			time.Sleep(50 * time.Millisecond)
		}
		ready += time.Since(t0)
		for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
			for !get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/" + lease) {
				time.Sleep(200 * time.Millisecond)
			}
		}
		time.Sleep(5 * time.Second) // let the controllers settle
		for _, pid := range m.PIDs() {
			rss += residentKiB(pid)
		}
		m.Halt()
	}
	b.ReportMetric(ready.Seconds()/float64(b.N), "boot-to-ready-s")
	b.ReportMetric(float64(rss)/1024/float64(b.N), "RSS-MiB")
}

// residentKiB is a process's resident memory (VmRSS).
func residentKiB(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}
