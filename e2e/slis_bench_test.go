package e2e

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/sim"
)

// podStartWatch watches a Deployment's pods through the static IP and
// keeps, for each pod, when it was created and when a watch first saw all
// its containers started: the pod startup SLI of Kubernetes' scalability
// tests. Several watches run at once, each reconnecting every 10 s (or
// when the master it reached stops answering), and the earliest sight of
// each pod counts, so one crashed master's stalled stream does not delay
// what the others see.
type podStartWatch struct {
	api       *apiClient
	selector  string
	stop      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	created   map[string]time.Time // creationTimestamp, or the first sight in its second
	scheduled map[string]time.Time // first seen bound to a node
	started   map[string]time.Time
}

type podEvent struct {
	Type   string `json:"type"`
	Object struct {
		Metadata struct {
			Name              string    `json:"name"`
			ResourceVersion   string    `json:"resourceVersion"`
			CreationTimestamp time.Time `json:"creationTimestamp"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
		Status struct {
			ContainerStatuses []struct {
				State struct {
					Running *struct{} `json:"running"`
				} `json:"state"`
			} `json:"containerStatuses"`
		} `json:"status"`
	} `json:"object"`
}

func watchPodStarts(api *apiClient, selector string, watches int) *podStartWatch {
	w := &podStartWatch{api: api, selector: selector, stop: make(chan struct{}), created: map[string]time.Time{},
		scheduled: map[string]time.Time{}, started: map[string]time.Time{}}
	for range watches {
		w.wg.Add(1)
		go w.loop()
	}
	return w
}

func (w *podStartWatch) loop() {
	defer w.wg.Done()
	client := &http.Client{Timeout: 15 * time.Second, Transport: w.api.client.Transport}
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		req, _ := http.NewRequest("GET", w.api.server+"/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=10&labelSelector="+w.selector, nil)
		resp, err := client.Do(req)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			seen := time.Now()
			var ev podEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Object.Metadata.Name == "" {
				continue
			}
			w.see(ev, seen)
		}
		resp.Body.Close()
	}
}

func (w *podStartWatch) see(ev podEvent, seen time.Time) {
	m := ev.Object.Metadata
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.created[m.Name]; !ok {
		// creationTimestamp has whole seconds: a sight within its second
		// is the better figure of when the pod was created.
		c := m.CreationTimestamp
		if seen.Sub(c) >= 0 && seen.Sub(c) < time.Second && ev.Type == "ADDED" {
			c = seen
		}
		w.created[m.Name] = c
	}
	if t, ok := w.scheduled[m.Name]; ev.Object.Spec.NodeName != "" && (!ok || seen.Before(t)) {
		w.scheduled[m.Name] = seen
	}
	cs := ev.Object.Status.ContainerStatuses
	all := len(cs) > 0
	for _, c := range cs {
		all = all && c.State.Running != nil
	}
	if t, ok := w.started[m.Name]; all && (!ok || seen.Before(t)) {
		w.started[m.Name] = seen
	}
}

func (w *podStartWatch) startedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.started)
}

// end stops the watches and returns the startup latency of each pod seen
// started, the part of it until the pod was seen bound to a node, and how
// many pods were seen.
func (w *podStartWatch) end() (latencies, toSchedule []time.Duration, pods int) {
	close(w.stop)
	w.wg.Wait()
	for name, s := range w.started {
		latencies = append(latencies, s.Sub(w.created[name]))
		if sch, ok := w.scheduled[name]; ok {
			toSchedule = append(toSchedule, sch.Sub(w.created[name]))
		}
	}
	return latencies, toSchedule, len(w.created)
}

// quantile is the q-quantile (0..1) of ds, by the nearest rank.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// latencies are the durations of a writer's successful calls.
func (w *writer) latencies() (ok []time.Duration, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.calls {
		if c.ok {
			ok = append(ok, c.took)
		} else {
			failed++
		}
	}
	return ok, failed
}

// hollowNodes are the emulator's hollow nodes: how many, their resident
// memory and the CPU time they have used.
func hollowNodes(b *testing.B, c *cluster) (n int, rss int64, cpu float64) {
	b.Helper()
	var nodes sim.NodesStatus
	resp, err := http.Get(c.endpoint + "/sim/v1/nodes")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes.Nodes {
		rss += n.RSSBytes
		cpu += n.CPUSeconds
	}
	return len(nodes.Nodes), rss, cpu
}

// cpuByProcess is the CPU time used so far by each process of the
// emulated cluster: the masters' static pods and services (INSTANCE/NAME),
// and the hollow nodes (all together).
func cpuByProcess(b *testing.B, c *cluster) map[string]float64 {
	b.Helper()
	resp, err := http.Get(c.endpoint + "/sim/v1/members")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var members []sim.MemberStatus
	if err := json.NewDecoder(resp.Body).Decode(&members); err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range members {
		for _, p := range m.Pods {
			out[m.Instance+"/"+p.Name] += p.CPUSeconds
		}
	}
	_, _, out["hollow nodes"] = hollowNodes(b, c)
	return out
}

// cpuShares is the cores each kind of process (a master's process by its
// name, summed over the masters; the hollow nodes) used between two
// readings of cpuByProcess, the busiest first. A process that stopped
// counts until its last reading; one that started again, from its start.
func cpuShares(before, after map[string]float64, d time.Duration) string {
	type share struct {
		name  string
		cores float64
	}
	used := map[string]float64{}
	for key, v := range after {
		if v >= before[key] {
			v -= before[key]
		}
		used[path.Base(key)] += v // INSTANCE/NAME: by NAME
	}
	var all []share
	total := 0.0
	for name, v := range used {
		cores := v / d.Seconds()
		total += cores
		all = append(all, share{name, cores})
	}
	slices.SortFunc(all, func(a, b share) int { return cmp.Compare(b.cores, a.cores) })
	out := fmt.Sprintf("%.2f cores in all:", total)
	for _, s := range all {
		out += fmt.Sprintf(" %s %.2f,", s.name, s.cores)
	}
	return strings.TrimSuffix(out, ",")
}

// BenchmarkClusterSLIs measures, on 3 masters with 50 hollow nodes, the
// Kubernetes scalability SLIs through the static IP: the latency of
// mutating API calls (a ConfigMap written every 100 ms, each on a new
// connection through the load balancer: TCP and TLS included) and pod
// startup latency (creation to all containers started, seen by a watch)
// of a 500-pod Deployment; first with the nodes idle (API calls alone),
// then as a Deployment is created in steady state, then with the master
// holding the controller manager's lease crashed as a second 500-pod
// Deployment is created; and the resident memory and CPU of a hollow
// node. The SLOs: p99 API call latency under 1 s, p99 pod startup under
// 5 s.
func BenchmarkClusterSLIs(b *testing.B) {
	c, s, k := joinedCluster(b, "slis", 50)
	api := c.adminAPI(b)
	b.ResetTimer()
	report := func(name string, calls []time.Duration, failed int) {
		b.ReportMetric(float64(quantile(calls, 0.5).Milliseconds()), name+"-api-p50-ms")
		b.ReportMetric(float64(quantile(calls, 0.99).Milliseconds()), name+"-api-p99-ms")
		b.ReportMetric(float64(failed), name+"-api-failed")
	}
	idle := func() {
		b.Helper()
		cpu0, t0 := cpuByProcess(b, c), time.Now()
		w := startWriter(api, "sli-idle")
		time.Sleep(20 * time.Second)
		close(w.stop)
		<-w.done
		cpu1, d := cpuByProcess(b, c), time.Since(t0)
		cores := (cpu1["hollow nodes"] - cpu0["hollow nodes"]) / d.Seconds()
		calls, failed := w.latencies()
		report("idle", calls, failed)
		b.ReportMetric(cores, "idle-hollow-nodes-cores")
		b.Logf("idle: %d mutating calls, %d failed, p50 %s p99 %s max %s; the 50 hollow nodes use %.2f cores (%.3f each); CPU: %s", len(calls)+failed, failed,
			quantile(calls, 0.5).Round(time.Millisecond), quantile(calls, 0.99).Round(time.Millisecond), quantile(calls, 1).Round(time.Millisecond), cores, cores/50,
			cpuShares(cpu0, cpu1, d))
	}
	phase := func(name, deployment string, during func()) {
		b.Helper()
		cpu0, t0 := cpuByProcess(b, c), time.Now()
		w := startWriter(api, "sli-"+deployment)
		pods := watchPodStarts(api, "app="+deployment, 3)
		time.Sleep(2 * time.Second) // the watches are established
		k.must("create", "deployment", deployment, "--image=registry.k8s.io/pause:3.10", "--replicas=500")
		if during != nil {
			during()
		}
		// The watches say when all have started: kubectl's lists of 500
		// pods would load the machine measured.
		waitFor(b, 6*time.Minute, "500 pods of "+deployment+" seen started", func() bool { return pods.startedCount() == 500 })
		time.Sleep(3 * time.Second) // writes after
		if n := runningPods(k, "app="+deployment); n != 500 {
			b.Errorf("%s: kubectl sees %d pods Running, the watches 500", name, n)
		}
		close(w.stop)
		<-w.done
		starts, toSchedule, seen := pods.end()
		b.Logf("%s: CPU from the Deployment's creation until its pods ran: %s", name, cpuShares(cpu0, cpuByProcess(b, c), time.Since(t0)))
		calls, failed := w.latencies()
		if len(starts) < 500 {
			b.Errorf("%s: %d of 500 pods seen started by the watches (%d seen at all)", name, len(starts), seen)
		}
		report(name, calls, failed)
		b.ReportMetric(float64(quantile(starts, 0.5).Milliseconds()), name+"-pod-startup-p50-ms")
		b.ReportMetric(float64(quantile(starts, 0.99).Milliseconds()), name+"-pod-startup-p99-ms")
		b.Logf("%s: %d mutating calls, %d failed, p50 %s p99 %s max %s; %d pods started, startup p50 %s p99 %s max %s (of which creation to bound to a node: p50 %s p99 %s)",
			name, len(calls)+failed, failed,
			quantile(calls, 0.5).Round(time.Millisecond), quantile(calls, 0.99).Round(time.Millisecond), quantile(calls, 1).Round(time.Millisecond),
			len(starts), quantile(starts, 0.5).Round(time.Millisecond), quantile(starts, 0.99).Round(time.Millisecond), quantile(starts, 1).Round(time.Millisecond),
			quantile(toSchedule, 0.5).Round(time.Millisecond), quantile(toSchedule, 0.99).Round(time.Millisecond))
	}
	idle()
	phase("steady", "steady", nil)
	kcm, zone := controllerManagerLeader(b, k, s)
	phase("crash", "crash", func() {
		c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + kcm + "/crash")
	})
	b.StopTimer()
	n, total, _ := hollowNodes(b, c)
	if n != 50 || total == 0 {
		b.Fatalf("after 1,000 pods, %d hollow nodes use %d bytes", n, total)
	}
	b.ReportMetric(float64(total)/float64(n)/(1<<20), "MiB/hollow-node")
	b.Logf("resident memory of the 50 hollow nodes: %s in all, %s each", fmt.Sprintf("%.0f MiB", float64(total)/(1<<20)),
		fmt.Sprintf("%.1f MiB", float64(total)/float64(n)/(1<<20)))
}
