package machine

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubeha/kubeha/sim/kubelet"
	"sigs.k8s.io/yaml"
)

// kubeletConfig is the part of a KubeletConfiguration the node stand-in
// reads.
type kubeletConfig struct {
	RegisterNode       *bool `json:"registerNode"`
	RegisterWithTaints []struct {
		Key    string `json:"key"`
		Value  string `json:"value"`
		Effect string `json:"effect"`
	} `json:"registerWithTaints"`
}

// nodeKubelet is what registers the machine as a Node where the startup
// script asked the kubelet to: kubemark's hollow kubelet (the kubelet's
// own code, with a fake container runtime), with the name, kubeconfig and
// taints of the kubelet unit the script wrote. nil when the unit gives no
// --kubeconfig (a standalone kubelet registers nothing).
//
// What it cannot show: the hollow kubelet does not run the static pods
// (the Runner does), so the master's Node has no mirror pods, and its
// node status comes from a fake cAdvisor.
func (m *Machine) nodeKubelet(r *kubelet.Runner) (*kubelet.Process, error) {
	unit, err := os.ReadFile(m.path("etc/systemd/system/kubelet.service"))
	if err != nil {
		return nil, fmt.Errorf("read the kubelet unit: %w", err)
	}
	flags := map[string]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		cmd, ok := strings.CutPrefix(line, "ExecStart=")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(cmd)[1:] {
			k, v, _ := strings.Cut(f, "=")
			flags[k] = v
		}
	}
	if flags["--kubeconfig"] == "" {
		return nil, nil
	}
	var cfg kubeletConfig
	if c := flags["--config"]; c != "" {
		data, err := os.ReadFile(m.path(c))
		if err != nil {
			return nil, fmt.Errorf("read the kubelet's config: %w", err)
		}
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("read the kubelet's config %s: %w", c, err)
		}
	}
	if cfg.RegisterNode != nil && !*cfg.RegisterNode {
		return nil, nil
	}
	name := flags["--hostname-override"]
	if name == "" {
		name = m.Name
	}
	var taints []string
	for _, t := range cfg.RegisterWithTaints {
		taints = append(taints, t.Key+"="+t.Value+":"+t.Effect)
	}
	kubeconfig, err := r.MapKubeconfig(m.path(flags["--kubeconfig"]))
	if err != nil {
		return nil, err
	}
	var extra []string
	if l := flags["--node-labels"]; l != "" {
		extra = append(extra, "--node-labels="+l)
	}
	return HollowKubelet(m.Binaries, name, kubeconfig, m.path("var/lib/kubelet"), taints, extra...)
}

// HollowKubelet is kubemark's hollow kubelet for a Node named name: the
// real kubelet code with a fake container runtime, as Kubernetes'
// scalability tests run it. kubeconfig is its credentials (for a node that
// bootstraps, where the CSR flow writes them); dir holds its state. Every
// hollow kubelet here shares this host's network, so each listens on a
// free port of its own and serves no read-only port.
func HollowKubelet(b *kubelet.Binaries, name, kubeconfig, dir string, taints []string, extra ...string) (*kubelet.Process, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("hollow kubelet %s: %w", name, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("hollow kubelet %s: %w", name, err)
	}
	args := []string{"--morph=kubelet", "--name=" + name, "--kubeconfig=" + kubeconfig,
		fmt.Sprintf("--kubelet-port=%d", port), "--kubelet-read-only-port=0", "--use-host-image-service=false",
		"--cert-dir=" + filepath.Join(dir, "pki")}
	if len(taints) > 0 {
		args = append(args, "--register-with-taints="+strings.Join(taints, ","))
	}
	args = append(args, extra...)
	// kubemark makes its root and pod directories in TMPDIR.
	return &kubelet.Process{Bin: filepath.Join(b.Dir, "kubemark"), Args: args, Env: []string{"TMPDIR=" + dir}, Dir: dir}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// services are the systemd units other than the kubelet and containerd
// that the startup script started (systemctl enable --now, or restart,
// NAME.service), each run as its unit's ExecStart with the boot's
// environment: init's part of a VM that the machine stands in for. A unit
// whose ExecStart is a script of the machine runs with bash.
func (m *Machine) services(env []string) (map[string]kubelet.Process, error) {
	out := map[string]kubelet.Process{}
	for _, c := range m.StandInCalls() {
		unit, ok := strings.CutPrefix(c, "systemctl enable --now ")
		if !ok {
			unit, ok = strings.CutPrefix(c, "systemctl restart ")
		}
		if !ok || unit == "kubelet.service" || unit == "containerd.service" || !strings.HasSuffix(unit, ".service") {
			continue
		}
		data, err := os.ReadFile(m.path("etc/systemd/system/" + unit))
		if err != nil {
			return nil, fmt.Errorf("read unit %s: %w", unit, err)
		}
		var argv []string
		for _, line := range strings.Split(string(data), "\n") {
			if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
				argv = strings.Fields(cmd)
			}
		}
		if len(argv) == 0 {
			return nil, fmt.Errorf("unit %s has no ExecStart", unit)
		}
		out[strings.TrimSuffix(unit, ".service")] = kubelet.Process{Bin: "/bin/bash", Args: append([]string{m.path(argv[0])}, argv[1:]...), Env: env, Dir: m.Root}
	}
	return out, nil
}
