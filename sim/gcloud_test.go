package sim

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

// TestGcloudConformance drives the real gcloud CLI against the emulator:
// list, describe, create and delete addresses, firewall rules and forwarding
// rules, and list and describe instances.
func TestGcloudConformance(t *testing.T) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		t.Skip("gcloud is not installed, so the gcloud conformance test is skipped (install Debian/Google's google-cloud-cli to run it)")
	}
	if testing.Short() {
		t.Skip("gcloud conformance is slow; skipped with -short")
	}
	s, c := startSim(t, Options{})
	cfg := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gcloud, append(args, "--quiet")...)
		cmd.Env = append(os.Environ(), "CLOUDSDK_CONFIG="+cfg, "CLOUDSDK_CORE_DISABLE_PROMPTS=1")
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("gcloud %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	runJSON := func(v any, args ...string) {
		t.Helper()
		out := run(append(args, "--format=json")...)
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("gcloud %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("config", "set", "api_endpoint_overrides/compute", s.Endpoint())
	run("config", "set", "auth/disable_credentials", "true")
	run("config", "set", "core/project", project)
	run("config", "set", "core/disable_usage_reporting", "true")

	// addresses
	run("compute", "addresses", "create", "prod-master-ip", "--region", region)
	run("compute", "addresses", "create", "prod-master-internal", "--region", region, "--subnet", "default")
	var addrs []map[string]any
	runJSON(&addrs, "compute", "addresses", "list")
	if len(addrs) != 2 {
		t.Fatalf("addresses list: %v", addrs)
	}
	var addr map[string]any
	runJSON(&addr, "compute", "addresses", "describe", "prod-master-ip", "--region", region)
	if addr["status"] != "RESERVED" || addr["addressType"] != "EXTERNAL" {
		t.Fatalf("address describe: %v", addr)
	}

	// firewall rules
	run("compute", "firewall-rules", "create", "prod-master-etcd", "--allow", "tcp:2380",
		"--source-tags", "prod-master", "--target-tags", "prod-master")
	var fw map[string]any
	runJSON(&fw, "compute", "firewall-rules", "describe", "prod-master-etcd")
	if fw["name"] != "prod-master-etcd" || !strings.Contains(toJSON(fw["allowed"]), "2380") {
		t.Fatalf("firewall describe: %v", fw)
	}
	run("compute", "firewall-rules", "update", "prod-master-etcd", "--allow", "tcp:2381")
	runJSON(&fw, "compute", "firewall-rules", "describe", "prod-master-etcd")
	if !strings.Contains(toJSON(fw["allowed"]), "2381") {
		t.Fatalf("firewall after update: %v", fw["allowed"])
	}
	var fws []map[string]any
	runJSON(&fws, "compute", "firewall-rules", "list")
	if len(fws) != 1 {
		t.Fatalf("firewall list: %v", fws)
	}

	// forwarding rules (with the health check and target pool they need)
	run("compute", "http-health-checks", "create", "prod-master-hc")
	run("compute", "target-pools", "create", "prod-master", "--region", region, "--http-health-check", "prod-master-hc")
	run("compute", "forwarding-rules", "create", "prod-master", "--region", region, "--address", "prod-master-ip",
		"--target-pool", "prod-master", "--ports", "443")
	var rule map[string]any
	runJSON(&rule, "compute", "forwarding-rules", "describe", "prod-master", "--region", region)
	runJSON(&addr, "compute", "addresses", "describe", "prod-master-ip", "--region", region)
	if rule["IPAddress"] != addr["address"] || addr["status"] != "IN_USE" {
		t.Fatalf("forwarding rule %v, address %v", rule, addr)
	}
	var rules []map[string]any
	runJSON(&rules, "compute", "forwarding-rules", "list")
	if len(rules) != 1 {
		t.Fatalf("forwarding rules list: %v", rules)
	}

	// instances: created through the Go client, seen through gcloud
	ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "prod-master-pd"}).Do())
	run("compute", "instances", "create", "prod-master", "--zone", zoneB, "--machine-type", "n1-standard-2",
		"--disk", "name=prod-master-pd,device-name=master-pd", "--labels", "kubeha-cluster=prod,kubeha-role=master")
	var insts []map[string]any
	runJSON(&insts, "compute", "instances", "list", "--filter", "labels.kubeha-cluster=prod")
	if len(insts) != 1 || insts[0]["status"] != "RUNNING" {
		t.Fatalf("instances list: %v", insts)
	}
	var inst map[string]any
	runJSON(&inst, "compute", "instances", "describe", "prod-master", "--zone", zoneB)
	if inst["name"] != "prod-master" || !strings.Contains(toJSON(inst["disks"]), "master-pd") {
		t.Fatalf("instance describe: %v", inst)
	}

	// a custom-mode network and its subnetwork
	run("compute", "networks", "create", "vpc", "--subnet-mode", "custom")
	run("compute", "networks", "subnets", "create", "masters", "--network", "vpc", "--region", region, "--range", "10.20.0.0/24")
	var subnet map[string]any
	runJSON(&subnet, "compute", "networks", "subnets", "describe", "masters", "--region", region)
	if subnet["ipCidrRange"] != "10.20.0.0/24" || !strings.HasSuffix(toJSON(subnet["network"]), `/global/networks/vpc"`) {
		t.Fatalf("subnet describe: %v", subnet)
	}
	var subnets []map[string]any
	runJSON(&subnets, "compute", "networks", "subnets", "list", "--network", "vpc")
	if len(subnets) != 1 {
		t.Fatalf("subnets list --network vpc: %v", subnets)
	}
	var nets []map[string]any
	runJSON(&nets, "compute", "networks", "list")
	if len(nets) != 2 {
		t.Fatalf("networks list: %v", nets)
	}

	// deletes, in the order the references require
	run("compute", "forwarding-rules", "delete", "prod-master", "--region", region)
	run("compute", "target-pools", "delete", "prod-master", "--region", region)
	run("compute", "http-health-checks", "delete", "prod-master-hc")
	run("compute", "addresses", "delete", "prod-master-ip", "prod-master-internal", "--region", region)
	run("compute", "firewall-rules", "delete", "prod-master-etcd")
	run("compute", "instances", "delete", "prod-master", "--zone", zoneB)
	runJSON(&addrs, "compute", "addresses", "list")
	runJSON(&fws, "compute", "firewall-rules", "list")
	runJSON(&rules, "compute", "forwarding-rules", "list")
	runJSON(&insts, "compute", "instances", "list")
	if len(addrs)+len(fws)+len(rules)+len(insts) != 0 {
		t.Fatalf("left after deletes: %d addresses, %d firewalls, %d rules, %d instances", len(addrs), len(fws), len(rules), len(insts))
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
