package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/sim/kubelet"
	"github.com/kubeha/kubeha/sim/machine"
)

// Worker nodes: kubemark's hollow nodes (the real kubelet code with a fake
// container runtime, as Kubernetes' scalability tests run them), started
// and stopped by the admin API. They join a cluster as any node does: with
// a bootstrap kubeconfig that names the static IP, through the CSR flow.
// Each has its host name (a UTS namespace where one can be made), its
// directory under DIR/nodes/NAME, and outlives an emulator restart.

// NodesRequest is the body of POST /sim/v1/nodes: run Count hollow nodes
// of Cluster (named CLUSTER-node-1 ... CLUSTER-node-N), new ones joining
// with BootstrapKubeconfig and running the kubelet of Kubernetes Version
// (default: the newest the emulator has; a node that runs keeps its own).
// Nodes past Count are stopped and their directories removed.
type NodesRequest struct {
	Cluster             string `json:"cluster"`
	Count               int    `json:"count"`
	BootstrapKubeconfig string `json:"bootstrapKubeconfig,omitempty"`
	Version             string `json:"version,omitempty"`
}

// NodeStatus is one hollow node, as GET /sim/v1/nodes lists them.
type NodeStatus struct {
	Name     string `json:"name"`
	Cluster  string `json:"cluster"`
	Version  string `json:"version"` // its kubelet's Kubernetes version
	State    string `json:"state"`   // running, waiting (to restart), failed
	Restarts int    `json:"restarts"`
	Error    string `json:"error,omitempty"`
	// RSSBytes is the hollow kubelet's resident memory; CPUSeconds the
	// CPU time (user and system) its process has used.
	RSSBytes   int64   `json:"rssBytes,omitempty"`
	CPUSeconds float64 `json:"cpuSeconds,omitempty"`
}

// NodesStatus is the body of GET /sim/v1/nodes.
type NodesStatus struct {
	Nodes []NodeStatus `json:"nodes"`
	// HostnameIsolation is how each node gets its own host name: "uts",
	// "user+uts" or "" (they share this host's).
	HostnameIsolation string `json:"hostnameIsolation"`
}

type nodePool struct {
	dir  string
	bins kubelet.Releases
	mu   sync.Mutex
	run  map[string]*hollowNode
}

type hollowNode struct {
	name, cluster, version string
	runner                 *kubelet.Runner
}

// nodeFile records a node's cluster beside its bootstrap kubeconfig.
type nodeFile struct {
	Cluster string `json:"cluster"`
	Version string `json:"version,omitempty"` // default: the newest built
}

func newNodePool(root string, bins kubelet.Releases) *nodePool {
	return &nodePool{dir: filepath.Join(root, "nodes"), bins: bins, run: map[string]*hollowNode{}}
}

// resume starts the nodes an earlier run of the emulator left.
func (p *nodePool) resume() error {
	entries, err := os.ReadDir(p.dir)
	if errors.Is(err, os.ErrNotExist) || p.bins == nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the hollow nodes: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(p.dir, e.Name(), "node.json"))
		if err != nil {
			continue
		}
		var f nodeFile
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		if err := p.startLocked(e.Name(), f); err != nil {
			return err
		}
	}
	return nil
}

// scale runs req.Count nodes of req.Cluster.
func (p *nodePool) scale(req NodesRequest) error {
	if p.bins == nil {
		return errors.New("hollow nodes need the Kubernetes binaries (kubemark): run make kube-binaries and start the emulator with them")
	}
	if req.Cluster == "" || req.Count < 0 || req.Count > 1000 {
		return fmt.Errorf("cluster %q, count %d: name the cluster and ask for 0 to 1000 nodes", req.Cluster, req.Count)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	have := 0
	for _, n := range p.run {
		if n.cluster == req.Cluster {
			have++
		}
	}
	if req.Count > have && req.BootstrapKubeconfig == "" {
		return errors.New("new nodes need bootstrapKubeconfig: make one with kubeha join")
	}
	if req.Version == "" {
		req.Version = p.bins.Newest().Kubernetes
	}
	if _, err := p.bins.Of(req.Version); err != nil {
		return fmt.Errorf("hollow nodes of Kubernetes %s: %w", req.Version, err)
	}
	var stop []*hollowNode
	for _, n := range p.run {
		if n.cluster == req.Cluster && nodeIndex(n.name, req.Cluster) > req.Count {
			stop = append(stop, n)
			delete(p.run, n.name)
		}
	}
	for i := 1; i <= req.Count; i++ {
		name := req.Cluster + "-node-" + strconv.Itoa(i)
		if p.run[name] != nil {
			continue
		}
		dir := filepath.Join(p.dir, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bootstrap.kubeconfig"), []byte(req.BootstrapKubeconfig), 0o600); err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
		nf := nodeFile{Cluster: req.Cluster, Version: req.Version}
		f, _ := json.Marshal(nf)
		if err := os.WriteFile(filepath.Join(dir, "node.json"), f, 0o600); err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
		if err := p.startLocked(name, nf); err != nil {
			return err
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range stop {
		wg.Add(1)
		go func() { defer wg.Done(); n.runner.Stop(); os.RemoveAll(filepath.Join(p.dir, n.name)) }()
	}
	wg.Wait()
	p.mu.Lock()
	return nil
}

func nodeIndex(name, cluster string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, cluster+"-node-"))
	return n
}

func (p *nodePool) startLocked(name string, f nodeFile) error {
	dir := filepath.Join(p.dir, name)
	bins := p.bins.Newest()
	if f.Version != "" {
		var err error
		if bins, err = p.bins.Of(f.Version); err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
	}
	proc, err := machine.HollowKubelet(bins, name, filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "kubelet"), nil,
		"--bootstrap-kubeconfig="+filepath.Join(dir, "bootstrap.kubeconfig"))
	if err != nil {
		return err
	}
	r := &kubelet.Runner{Manifests: filepath.Join(dir, "manifests"), Binaries: bins, LogDir: filepath.Join(dir, "log"), Hostname: name,
		Poll: time.Second, Processes: map[string]kubelet.Process{"kubelet": *proc}}
	r.Start()
	p.run[name] = &hollowNode{name: name, cluster: f.Cluster, version: bins.Kubernetes, runner: r}
	return nil
}

func (p *nodePool) status() NodesStatus {
	p.mu.Lock()
	nodes := make([]*hollowNode, 0, len(p.run))
	for _, n := range p.run {
		nodes = append(nodes, n)
	}
	p.mu.Unlock()
	out := NodesStatus{Nodes: []NodeStatus{}, HostnameIsolation: kubelet.HostnameIsolation()}
	for _, n := range nodes {
		st := NodeStatus{Name: n.name, Cluster: n.cluster, Version: n.version, State: "waiting"}
		for _, ps := range n.runner.Status() {
			st.State, st.Restarts, st.Error = ps.State, ps.Restarts, ps.Error
		}
		for _, pid := range n.runner.PIDs() {
			st.RSSBytes += kubelet.ProcRSS(pid)
			st.CPUSeconds += kubelet.ProcCPUSeconds(pid)
		}
		out.Nodes = append(out.Nodes, st)
	}
	sort.Slice(out.Nodes, func(i, j int) bool {
		a, b := out.Nodes[i], out.Nodes[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		return nodeIndex(a.Name, a.Cluster) < nodeIndex(b.Name, b.Cluster)
	})
	return out
}

// stop ends every node's process (the emulator closes); their directories
// stay for the next run.
func (p *nodePool) stop() {
	p.mu.Lock()
	nodes := p.run
	p.run = map[string]*hollowNode{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.runner.Stop() }()
	}
	wg.Wait()
}

func (s *Server) adminNodes(w http.ResponseWriter, _ *http.Request) { writeAdmin(w, s.nodes.status()) }

func (s *Server) adminScaleNodes(w http.ResponseWriter, r *http.Request) {
	var req NodesRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "decode the nodes request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.nodes.scale(req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeAdmin(w, s.nodes.status())
}
