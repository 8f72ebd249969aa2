package sim

import (
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"
)

// handler routes the compute/v1 paths kubeha and gcloud use, and the admin API.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	const p = "/compute/v1/projects/{project}"
	routes := []apiRoute{
		{"POST " + p + "/zones/{zone}/instances", "instances.insert", s.insertInstance},
		{"DELETE " + p + "/zones/{zone}/instances/{name}", "instances.delete", s.deleteInstance},
		{"POST " + p + "/zones/{zone}/instances/{name}/stop", "instances.stop", s.stopInstance},
		{"GET " + p + "/zones/{zone}/instances/{name}/serialPort", "instances.getSerialPortOutput", s.getSerialPortOutput},
		{"POST " + p + "/zones/{zone}/instances/{name}/start", "instances.start", s.startInstance},
		{"POST " + p + "/zones/{zone}/instances/{name}/setMetadata", "instances.setMetadata", s.setMetadata},
		{"POST " + p + "/zones/{zone}/instances/{name}/setLabels", "instances.setLabels", s.setLabels},
		{"POST " + p + "/zones/{zone}/instances/{name}/setServiceAccount", "instances.setServiceAccount", s.setServiceAccount},
		{"POST " + p + "/zones/{zone}/instances/{name}/attachDisk", "instances.attachDisk", s.attachDisk},
		{"POST " + p + "/zones/{zone}/instances/{name}/detachDisk", "instances.detachDisk", s.detachDisk},
		{"POST " + p + "/zones/{zone}/instances/{name}/setDiskAutoDelete", "instances.setDiskAutoDelete", s.setDiskAutoDelete},
		{"POST " + p + "/zones/{zone}/instances/{name}/addAccessConfig", "instances.addAccessConfig", s.addAccessConfig},
		{"POST " + p + "/zones/{zone}/instances/{name}/deleteAccessConfig", "instances.deleteAccessConfig", s.deleteAccessConfig},

		{"POST " + p + "/zones/{zone}/disks", "disks.insert", s.insertDisk},
		{"DELETE " + p + "/zones/{zone}/disks/{name}", "disks.delete", s.deleteDisk},

		{"POST " + p + "/regions/{region}/addresses", "addresses.insert", s.insertAddress},
		{"DELETE " + p + "/regions/{region}/addresses/{name}", "addresses.delete", s.deleteAddress},

		{"POST " + p + "/regions/{region}/targetPools", "targetPools.insert", s.insertTargetPool},
		{"DELETE " + p + "/regions/{region}/targetPools/{name}", "targetPools.delete", s.deleteTargetPool},
		{"POST " + p + "/regions/{region}/targetPools/{name}/addInstance", "targetPools.addInstance", s.poolAddInstance},
		{"POST " + p + "/regions/{region}/targetPools/{name}/removeInstance", "targetPools.removeInstance", s.poolRemoveInstance},
		{"POST " + p + "/regions/{region}/targetPools/{name}/getHealth", "targetPools.getHealth", s.poolGetHealth},

		{"POST " + p + "/global/httpHealthChecks", "httpHealthChecks.insert", s.insertHealthCheck},
		{"DELETE " + p + "/global/httpHealthChecks/{name}", "httpHealthChecks.delete", s.deleteHealthCheck},
		{"PUT " + p + "/global/httpHealthChecks/{name}", "httpHealthChecks.update", s.updateHealthCheck},

		{"POST " + p + "/regions/{region}/forwardingRules", "forwardingRules.insert", s.insertForwardingRule},
		{"DELETE " + p + "/regions/{region}/forwardingRules/{name}", "forwardingRules.delete", s.deleteForwardingRule},

		{"POST " + p + "/global/firewalls", "firewalls.insert", s.insertFirewall},
		{"PATCH " + p + "/global/firewalls/{name}", "firewalls.patch", s.patchFirewall},
		{"DELETE " + p + "/global/firewalls/{name}", "firewalls.delete", s.deleteFirewall},

		{"GET " + p + "/zones/{zone}/operations", "zoneOperations.list", s.listOperations},
		{"GET " + p + "/zones/{zone}/operations/{operation}", "zoneOperations.get", s.getOperation},
		{"POST " + p + "/zones/{zone}/operations/{operation}/wait", "zoneOperations.wait", s.waitOperation},
		{"GET " + p + "/regions/{region}/operations", "regionOperations.list", s.listOperations},
		{"GET " + p + "/regions/{region}/operations/{operation}", "regionOperations.get", s.getOperation},
		{"POST " + p + "/regions/{region}/operations/{operation}/wait", "regionOperations.wait", s.waitOperation},
		{"GET " + p + "/global/operations", "globalOperations.list", s.listOperations},
		{"GET " + p + "/global/operations/{operation}", "globalOperations.get", s.getOperation},
		{"POST " + p + "/global/operations/{operation}/wait", "globalOperations.wait", s.waitOperation},

		{"GET " + p + "/zones", "zones.list", s.listZones},
		{"GET " + p + "/zones/{zone}", "zones.get", s.getZone},
		{"GET " + p + "/regions", "regions.list", s.listRegions},
		{"GET " + p + "/regions/{region}", "regions.get", s.getRegion},
		{"POST " + p + "/global/networks", "networks.insert", s.insertNetwork},
		{"POST " + p + "/regions/{region}/subnetworks", "subnetworks.insert", s.insertSubnetwork},
	}
	routes = append(routes, reads(s, "zones", "instances", "instance", func() map[string]*compute.Instance { return s.w.Instances })...)
	routes = append(routes, reads(s, "zones", "disks", "disk", func() map[string]*compute.Disk { return s.w.Disks })...)
	routes = append(routes, reads(s, "regions", "addresses", "address", func() map[string]*compute.Address { return s.w.Addresses })...)
	routes = append(routes, reads(s, "regions", "targetPools", "targetPool", func() map[string]*compute.TargetPool { return s.w.TargetPools })...)
	routes = append(routes, reads(s, "regions", "forwardingRules", "forwardingRule", func() map[string]*compute.ForwardingRule { return s.w.ForwardingRules })...)
	routes = append(routes, reads(s, "global", "httpHealthChecks", "httpHealthCheck", func() map[string]*compute.HttpHealthCheck { return s.w.HealthChecks })...)
	routes = append(routes, reads(s, "global", "firewalls", "firewall", func() map[string]*compute.Firewall { return s.w.Firewalls })...)
	routes = append(routes, reads(s, "global", "networks", "network", func() map[string]*compute.Network { return s.w.Networks })...)
	routes = append(routes, reads(s, "regions", "subnetworks", "subnetwork", func() map[string]*compute.Subnetwork { return s.w.Subnetworks })...)
	for _, rt := range routes {
		mux.HandleFunc(rt.pattern, s.api(rt.method, rt.h))
	}
	mux.HandleFunc("/compute/v1/", func(w http.ResponseWriter, r *http.Request) {
		(&apiError{http.StatusNotFound, "notFound", "The emulator does not serve " + r.Method + " " + r.URL.Path}).write(w)
	})
	mux.HandleFunc("POST /batch/compute/v1", batchHandler(mux))
	s.iamHandler(mux)
	s.secretsHandler(mux)
	s.storageHandler(mux)
	const a = "/sim/v1/projects/{project}/zones/{zone}/instances/{name}"
	mux.HandleFunc("POST "+a+"/crash", s.adminCrash)
	mux.HandleFunc("POST "+a+"/revive", s.adminRevive)
	mux.HandleFunc("GET /sim/v1/latency", s.adminGetLatency)
	mux.HandleFunc("POST /sim/v1/latency", s.adminSetLatency)
	mux.HandleFunc("GET /sim/v1/faults", s.adminGetFaults)
	mux.HandleFunc("POST /sim/v1/faults", s.adminSetFaults)
	mux.HandleFunc("GET /sim/v1/requests", s.adminRequests)
	mux.HandleFunc("DELETE /sim/v1/requests", s.adminResetRequests)
	mux.HandleFunc("GET /sim/v1/members", s.adminMembers)
	mux.HandleFunc("GET /sim/v1/release", s.adminRelease)
	mux.HandleFunc("GET /sim/v1/ports", s.adminPorts)
	mux.HandleFunc("GET /sim/v1/nodes", s.adminNodes)
	mux.HandleFunc("POST /sim/v1/nodes", s.adminScaleNodes)
	mux.HandleFunc("GET /release/{version}/bin/linux/amd64/kubelet", s.serveKubelet)
	mux.HandleFunc("GET /release/{version}/bin/linux/amd64/kubelet.sha512", s.serveKubeletDigest)
	return mux
}

// applyLocked applies one finishing effect and returns work to do after the
// lock is released (stopping members, removing data).
func (s *Server) applyLocked(e effect) []func() {
	project := strings.Split(e.Key, "/")[1]
	switch e.Kind {
	case "instance.running":
		if in, ok := s.w.Instances[e.Key]; ok {
			in.Status = "RUNNING"
			if !s.w.Crashed[e.Key] {
				s.bootLocked(e.Key)
			}
		}
	case "instance.stop":
		in, ok := s.w.Instances[e.Key]
		if !ok {
			return nil
		}
		in.Status = "TERMINATED"
		region := s.regionOfZone(path.Base(in.Zone))
		for _, ni := range in.NetworkInterfaces {
			for _, ac := range ni.AccessConfigs {
				if _, a := s.w.addressByIP(project, region, ac.NatIP); a == nil {
					ac.NatIP = "" // an ephemeral IP is released on stop
				}
			}
		}
		return []func(){s.downLocked(e.Key)}
	case "instance.delete":
		in, ok := s.w.Instances[e.Key]
		if !ok {
			return nil
		}
		stop := s.downLocked(e.Key)
		region := s.regionOfZone(path.Base(in.Zone))
		for _, ni := range in.NetworkInterfaces {
			s.releaseIPLocked(project, region, ni.NetworkIP)
			for _, ac := range ni.AccessConfigs {
				s.releaseIPLocked(project, region, ac.NatIP)
			}
		}
		var removeDirs []string
		for _, d := range in.Disks {
			dk := relPath(project, d.Source)
			disk, ok := s.w.Disks[dk]
			if !ok {
				continue
			}
			var users []string
			for _, u := range disk.Users {
				if u != link(e.Key) {
					users = append(users, u)
				}
			}
			disk.Users = users
			if d.AutoDelete {
				delete(s.w.Disks, dk)
				removeDirs = append(removeDirs, s.diskDir(dk))
			}
		}
		delete(s.w.Instances, e.Key)
		delete(s.serial, e.Key)
		delete(s.w.Crashed, e.Key)
		return []func(){stop, func() {
			for _, d := range removeDirs {
				os.RemoveAll(d)
			}
		}}
	case "disk.ready":
		if d := s.w.Disks[e.Key]; d != nil && d.Status == "CREATING" {
			d.Status = "READY"
		}
	case "address.ready":
		if a := s.w.Addresses[e.Key]; a != nil && a.Status == "RESERVING" {
			a.Status = "RESERVED"
		}
	case "disk.delete":
		delete(s.w.Disks, e.Key)
		dir := s.diskDir(e.Key)
		return []func(){func() { os.RemoveAll(dir) }}
	case "address.delete":
		delete(s.w.Addresses, e.Key)
	case "targetPool.delete":
		delete(s.w.TargetPools, e.Key)
	case "healthCheck.delete":
		delete(s.w.HealthChecks, e.Key)
	case "firewall.delete":
		delete(s.w.Firewalls, e.Key)
	case "forwardingRule.delete":
		if f, ok := s.w.ForwardingRules[e.Key]; ok {
			s.releaseIPLocked(project, path.Base(f.Region), f.IPAddress)
			delete(s.w.ForwardingRules, e.Key)
		}
	}
	return nil
}

// --- admin API ---

func (s *Server) adminInstance(w http.ResponseWriter, r *http.Request) (string, bool) {
	key := "projects/" + r.PathValue("project") + "/zones/" + r.PathValue("zone") + "/instances/" + r.PathValue("name")
	s.mu.Lock()
	in, ok := s.w.Instances[key]
	running := ok && in.Status == "RUNNING"
	s.mu.Unlock()
	if !ok {
		errNotFound(key).write(w)
		return "", false
	}
	if !running {
		errInvalid("instance %s is %s, not RUNNING", key, in.Status).write(w)
		return "", false
	}
	return key, true
}

// adminCrash kills the instance's etcd member; the VM stays RUNNING.
func (s *Server) adminCrash(w http.ResponseWriter, r *http.Request) {
	key, ok := s.adminInstance(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	s.w.Crashed[key] = true
	stop := s.crashLocked(key)
	s.persistLocked()
	s.mu.Unlock()
	stop()
	writeAdmin(w, map[string]any{"instance": key, "member": "crashed"})
}

// adminRevive starts the instance's etcd member again from its disk.
func (s *Server) adminRevive(w http.ResponseWriter, r *http.Request) {
	key, ok := s.adminInstance(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	hung := s.frozen[key]
	delete(s.frozen, key)
	s.mu.Unlock()
	if hung != nil {
		hung.stop() // a hung machine is reset: its processes end, it boots again
	}
	s.mu.Lock()
	delete(s.w.Crashed, key)
	if s.members[key] == nil {
		s.bootLocked(key)
	}
	s.persistLocked()
	s.mu.Unlock()
	writeAdmin(w, map[string]any{"instance": key, "member": "starting"})
}

func (s *Server) adminGetLatency(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := map[string]string{}
	for k, v := range s.latency {
		out[k] = v.String()
	}
	s.mu.Unlock()
	writeAdmin(w, out)
}

// adminSetLatency sets per-method latencies: {"default":"300ms","instances.insert":"2s"}.
func (s *Server) adminSetLatency(w http.ResponseWriter, r *http.Request) {
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		errInvalid("latency body: %v", err).write(w)
		return
	}
	parsed := map[string]time.Duration{}
	for k, v := range body {
		d, err := time.ParseDuration(v)
		if err != nil {
			errInvalid("latency %s: %v", k, err).write(w)
			return
		}
		parsed[k] = d
	}
	s.mu.Lock()
	for k, d := range parsed {
		s.latency[k] = d
	}
	s.mu.Unlock()
	s.adminGetLatency(w, r)
}

func (s *Server) adminGetFaults(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	f := s.faults
	s.mu.Unlock()
	writeAdmin(w, f)
}

// adminSetFaults sets the share of API requests that fail:
// {"rate":0.1,"codes":[429,503]}, with "after":true once the emulator has
// done the work.
func (s *Server) adminSetFaults(w http.ResponseWriter, r *http.Request) {
	var f faultConfig
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		errInvalid("faults body: %v", err).write(w)
		return
	}
	if f.Rate < 0 || f.Rate > 1 {
		errInvalid("faults rate %v: want a share between 0 and 1", f.Rate).write(w)
		return
	}
	if f.Rate > 0 && len(f.Codes) == 0 {
		f.Codes = []int{http.StatusTooManyRequests, http.StatusServiceUnavailable}
	}
	for _, c := range f.Codes {
		if c < 400 || c > 599 {
			errInvalid("faults code %d: want an HTTP error code", c).write(w)
			return
		}
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	writeAdmin(w, f)
}

// RequestCounts is the body of GET /sim/v1/requests.
type RequestCounts struct {
	Total    int            `json:"total"`
	ByMethod map[string]int `json:"byMethod"`
	// InsertsWithoutRequestID counts, by method, the inserts that carried
	// no requestId (a retried one could create twice on GCE).
	InsertsWithoutRequestID map[string]int `json:"insertsWithoutRequestId"`
}

// Requests returns the API requests served so far, by "VERB method".
func (s *Server) Requests() RequestCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return RequestCounts{Total: s.total, ByMethod: maps.Clone(s.byMethod), InsertsWithoutRequestID: maps.Clone(s.noRequestID)}
}

// ResetRequests zeroes the request counts.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.total, s.byMethod, s.noRequestID = 0, map[string]int{}, map[string]int{}
	s.mu.Unlock()
}

func (s *Server) adminRequests(w http.ResponseWriter, _ *http.Request) { writeAdmin(w, s.Requests()) }

func (s *Server) adminResetRequests(w http.ResponseWriter, _ *http.Request) {
	s.ResetRequests()
	writeAdmin(w, s.Requests())
}

func (s *Server) adminMembers(w http.ResponseWriter, _ *http.Request) { writeAdmin(w, s.Members()) }

func writeAdmin(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func sortedRegions(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}
