package e2e

import (
	"bytes"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// run is the built binary running in the background, its output (stdout
// and stderr together) collected as it comes.
type run struct {
	t    testing.TB
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	code int
}

type lockedWriter struct{ r *run }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.out.Write(p)
}

// start runs kubeha with args against the cluster's emulator.
func (c *cluster) start(args ...string) *run {
	c.t.Helper()
	return startCmd(c.t, execCommand(kubeha, append(args, "--gce-endpoint", c.endpoint)...))
}

// startCmd runs cmd in the background, its output collected.
func startCmd(t testing.TB, cmd *exec.Cmd) *run {
	t.Helper()
	r := &run{t: t, done: make(chan struct{}), cmd: cmd}
	r.cmd.Stdout, r.cmd.Stderr = lockedWriter{r}, lockedWriter{r}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := r.cmd.Wait()
		r.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
		close(r.done)
	}()
	t.Cleanup(func() { r.cmd.Process.Kill(); <-r.done })
	return r
}

func (r *run) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// waitFor waits until the output matches re, and returns the length of the
// output up to the end of the match.
func (r *run) waitFor(re string, timeout time.Duration) int {
	r.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		text := r.text()
		if loc := rx.FindStringIndex(text); loc != nil {
			return loc[1]
		}
		select {
		case <-r.done:
			r.t.Fatalf("kubeha ended (exit %d) before printing %q:\n%s", r.code, re, text)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("kubeha did not print %q within %s:\n%s", re, timeout, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for the end, killing kubeha after timeout (a failure).
func (r *run) wait(timeout time.Duration) int {
	r.t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(timeout):
		r.cmd.Process.Kill()
		<-r.done
		r.t.Fatalf("kubeha still ran after %s; output:\n%s", timeout, r.text())
		return -1
	}
}

// lowestVoter is the voter with the lowest member ID: the one a health
// check that asked members one after another asked first.
func lowestVoter(t testing.TB, s status) (name, zone string) {
	t.Helper()
	var low uint64
	for _, r := range s.Replicas {
		id, err := strconv.ParseUint(r.Etcd.ID, 16, 64)
		if err != nil || r.Etcd.Role != "voter" {
			continue
		}
		if name == "" || id < low {
			low, name, zone = id, r.Name, r.Zone
		}
	}
	if name == "" {
		t.Fatalf("no voter: %+v", s.Replicas)
	}
	return name, zone
}

// downNames returns every name listed after "down: " in text.
func downNames(text string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`down: ([^;\n]*)`).FindAllStringSubmatch(text, -1) {
		for _, part := range strings.Split(m[1], "), ") {
			if strings.Contains(part, "(no leader") {
				// A live member while the others elect a leader (the
				// crashed one led): true of that moment, and not down.
				continue
			}
			if f := strings.Fields(part); len(f) > 0 {
				names = append(names, f[0])
			}
		}
	}
	return names
}

// TestCrashedLowestVoterDuringScaleUp: the lowest-ID voter crashes as
// 3 -> 5 promotes its first learner. Apply stops within seconds, not
// after a 5-minute gate; it names only the crashed member as down; the
// fault tolerance it prints after the crash is the measured one (0, where
// the plan said 1 or 2); and the next apply converges around the crashed
// member.
func TestCrashedLowestVoterDuringScaleUp(t *testing.T) {
	c, s := appliedCluster(t, "crashup", 3, false)
	victim, zone := lowestVoter(t, s)
	c.write(5, false)
	r := c.start("apply", "-f", c.spec, "--auto-approve")
	r.waitFor(`promote-etcd-member \S+ \.\.\.\n`, 2*time.Minute)
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + victim + "/crash")
	crashed := len(r.text())
	t0 := time.Now()
	code := r.wait(90 * time.Second)
	out := r.text()
	if code != 1 {
		t.Fatalf("apply with a voter crashed during it: exit %d\n%s", code, out)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("apply took %s to stop after the crash", d)
	}
	down := downNames(out)
	if len(down) == 0 {
		t.Fatalf("the failure does not say who is down:\n%s", out)
	}
	for _, n := range down {
		if n != victim {
			t.Errorf("%s is named down; only %s crashed:\n%s", n, victim, out)
		}
	}
	if strings.Contains(out, "lost quorum") || strings.Contains(out, "restore") {
		t.Errorf("the failure speaks of a lost quorum or a restore; quorum held:\n%s", out)
	}
	// Steps that began after the crash report the fault tolerance measured
	// then: 0.
	for _, line := range strings.Split(out[crashed:], "\n") {
		m := regexp.MustCompile(`^(\[\s*\d+/\d+\] .*) done in .*fault tolerance (\d+)`).FindStringSubmatch(line)
		if m == nil || !strings.Contains(out[crashed:], m[1]+" ...") {
			continue
		}
		if m[2] != "0" {
			t.Errorf("after the crash, a step reports fault tolerance %s: %s", m[2], line)
		}
	}
	c.quorumHeld("after the crash")

	// The next apply plans around the crashed member and converges.
	c.apply()
	if r := c.kubeha("plan", "-f", c.spec, "--detailed-exitcode"); r.code != 0 {
		t.Fatalf("plan after the second apply (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	s = c.status()
	if s.Etcd.Voters != 5 || s.Etcd.HealthyVoters != 4 || s.Etcd.Learners != 0 {
		t.Fatalf("want 5 voters, 4 of them healthy: %+v", s.Etcd)
	}
}

// TestSIGTERMDuringGate: SIGTERM while a health gate waits (a stopped
// master is started, and its member boots slowly) ends apply within 5s,
// saying what the gate waited for; the next apply converges.
func TestSIGTERMDuringGate(t *testing.T) {
	c, s := appliedCluster(t, "termgate", 3, false)
	var victim, zone string
	for _, rep := range s.Replicas {
		if !rep.Etcd.Leader {
			victim, zone = rep.Name, rep.Zone
		}
	}
	post := func(path, body string) {
		t.Helper()
		resp, err := httpPost(c.endpoint+path, body)
		if err != nil || resp != 200 {
			t.Fatalf("POST %s: %d %v", path, resp, err)
		}
	}
	post("/compute/v1/projects/kubeha-e2e/zones/"+zone+"/instances/"+victim+"/stop", "")
	waitFor(t, 30*time.Second, victim+" to stop", func() bool {
		for _, rep := range c.status().Replicas {
			if rep.Name == victim {
				return rep.InstanceStatus == "TERMINATED"
			}
		}
		return false
	})
	post("/sim/v1/latency", `{"boot":"2m"}`)
	r := c.start("apply", "-f", c.spec, "--auto-approve")
	r.waitFor(`start-instance `+victim+` wait for 3 healthy etcd voters: 2 of 3 voters healthy`, time.Minute)
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	code := r.wait(30 * time.Second)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("apply took %s to end after SIGTERM", d)
	}
	if code != 1 || !strings.Contains(r.text(), "Interrupted") {
		t.Errorf("apply after SIGTERM: exit %d\n%s", code, r.text())
	}
	// The VM went on booting; let its member start now (a crash ends the
	// slow boot, a revive boots it again without delay).
	post("/sim/v1/latency", `{"boot":"0s"}`)
	post("/sim/v1/projects/kubeha-e2e/zones/"+zone+"/instances/"+victim+"/crash", "")
	post("/sim/v1/projects/kubeha-e2e/zones/"+zone+"/instances/"+victim+"/revive", "")
	c.quorumHeld("after SIGTERM during a gate")
	c.apply()
	c.converged(3)
}

// httpPost posts a JSON body (or none) and returns the status code.
func httpPost(url, body string) (int, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestRemediationWithLowestVoterDown: remediation replaces a member down
// for longer than unhealthyAfter while the lowest-ID voter is down too
// (since moments ago: not yet to be replaced). Its gates count the three
// healthy voters of five and go on; a gate that asked members one after
// another under one deadline spent it on the lowest-ID voter and counted
// every member after it as down, until the 5-minute gate ended.
func TestRemediationWithLowestVoterDown(t *testing.T) {
	t.Parallel() // mostly waiting out unhealthyAfter
	c, s := appliedCluster(t, "remedy", 5, true)
	low, lowZone := lowestVoter(t, s)
	var victim, zone string
	for _, rep := range s.Replicas {
		if rep.Name != low && !rep.Etcd.Leader {
			victim, zone = rep.Name, rep.Zone
		}
	}
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + victim + "/crash")
	c.kubeha("status", "-f", c.spec) // seen unhealthy from now
	time.Sleep(31 * time.Second)
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + lowZone + "/instances/" + low + "/crash")
	r := c.start("apply", "-f", c.spec, "--auto-approve")
	if code := r.wait(2 * time.Minute); code != 0 {
		t.Fatalf("remediation with %s down: exit %d\n%s", low, code, r.text())
	}
	if !strings.Contains(r.text(), "delete-instance "+victim+" done") {
		t.Fatalf("%s was not replaced:\n%s", victim, r.text())
	}
	for _, n := range downNames(r.text()) {
		if n != low && n != victim {
			t.Errorf("%s is named down:\n%s", n, r.text())
		}
	}
	s = c.status()
	if s.Etcd.Voters != 5 || s.Etcd.HealthyVoters != 4 {
		t.Fatalf("after the replacement: %+v", s.Etcd)
	}
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + lowZone + "/instances/" + low + "/revive")
	waitFor(t, 30*time.Second, low+" to be healthy again", func() bool { return c.status().Etcd.HealthyVoters == 5 })
	c.converged(5)
}
