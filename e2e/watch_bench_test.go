package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/sim/kubelet"
)

// procStats reads a process's CPU time (user+system) and resident memory.
func procStats(b *testing.B, pid int) (cpu time.Duration, rss int64) {
	b.Helper()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
		b.Skip("no /proc: watch's CPU and memory are not measured on this system")
	}
	return time.Duration(kubelet.ProcCPUSeconds(pid) * float64(time.Second)), kubelet.ProcRSS(pid)
}

// BenchmarkWatch measures a watcher managing 1 and 20 one-master clusters:
// the reaction time from a saved spec to the start of its apply, and the
// idle CPU and resident memory of the watch process.
func BenchmarkWatch(b *testing.B) {
	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("%d-clusters", n), func(b *testing.B) {
			dir := b.TempDir()
			_, url := startSimServeB(b, filepath.Join(dir, "sim"))
			specs := filepath.Join(dir, "clusters")
			if err := os.MkdirAll(specs, 0o755); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("fleet%02d", i)
				spec := fmt.Sprintf(tourSpec, name, 1, false) + "  pki:\n    dir: pki-" + name + "\n"
				if err := os.WriteFile(filepath.Join(specs, name+".yaml"), []byte(spec), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			cmd := execCommand(kubeha, "watch", "-f", specs, "--gce-endpoint", url, "--resync", "30m")
			logPath := filepath.Join(dir, "watch.log")
			logFile, _ := os.Create(logPath)
			cmd.Stderr = logFile
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			logs := func() string { data, _ := os.ReadFile(logPath); return string(data) }
			deadline := time.Now().Add(10 * time.Minute)
			for strings.Count(logs(), "msg=applied") < n {
				if time.Now().After(deadline) {
					b.Fatalf("the fleet did not converge:\n%s", logs())
				}
				time.Sleep(500 * time.Millisecond)
			}
			// Idle: no change, no resync for 20s.
			time.Sleep(2 * time.Second)
			cpu0, _ := procStats(b, cmd.Process.Pid)
			time.Sleep(20 * time.Second)
			cpu1, rss := procStats(b, cmd.Process.Pid)
			// Reaction: save a change, time until its apply starts.
			var reactions []time.Duration
			for i := 0; i < 5; i++ {
				before := strings.Count(logs(), "msg=applying")
				path := filepath.Join(specs, "fleet00.yaml")
				spec := fmt.Sprintf(tourSpec, "fleet00", 1, false) + fmt.Sprintf("  pki:\n    dir: pki-fleet00\n  # edit %d\n  etcd:\n    quorumRead: %t\n", i, i%2 == 1)
				t0 := time.Now()
				if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
					b.Fatal(err)
				}
				for strings.Count(logs(), "msg=applying") == before {
					if time.Since(t0) > time.Minute {
						b.Fatalf("no apply after a saved change:\n%s", logs())
					}
					time.Sleep(5 * time.Millisecond)
				}
				reactions = append(reactions, time.Since(t0))
				for strings.Count(logs(), "msg=applied") < n+i+1 {
					time.Sleep(100 * time.Millisecond)
				}
			}
			slices.Sort(reactions)
			b.ReportMetric(float64(reactions[len(reactions)/2].Milliseconds()), "reaction-median-ms")
			b.ReportMetric(float64(reactions[len(reactions)-1].Milliseconds()), "reaction-max-ms")
			b.ReportMetric(100*(cpu1-cpu0).Seconds()/20, "idle-cpu-%")
			b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
		})
	}
}
