package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

// pod is the part of a static pod manifest the stand-in reads.
type podManifest struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		HostNetwork bool `json:"hostNetwork"`
		Containers  []struct {
			Name    string   `json:"name"`
			Image   string   `json:"image"`
			Command []string `json:"command"`
			Args    []string `json:"args"`
			Env     []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"env"`
		} `json:"containers"`
	} `json:"spec"`
}

// PodStatus is one static pod as the stand-in runs it.
type PodStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"` // running, waiting (to restart), failed (cannot start)
	Restarts int    `json:"restarts"`
	Error    string `json:"error,omitempty"`
	// CPUSeconds is the CPU time its running process has used.
	CPUSeconds float64 `json:"cpuSeconds,omitempty"`
}

// Runner runs the static pods of a manifest directory.
type Runner struct {
	Manifests string    // the directory the kubelet watches
	Binaries  *Binaries // what images resolve to
	Address   string    // the machine's IP: a 0.0.0.0 bind becomes it
	// PortOffset moves the ports below 1024 the pods serve on (443) up by
	// that much, where this process may not bind them (an ordinary user);
	// 0 keeps them.
	PortOffset int
	LogDir     string // each container logs to LogDir/<pod>.log
	// Hostname is the machine's host name, which its containers report
	// where a UTS namespace can be made (see HostnameIsolation).
	Hostname string
	// Processes run beside the static pods, each as a pod of its name: the
	// kubelet's own work that the stand-in does with real code (the hollow
	// kubelet that registers the machine as a Node).
	Processes map[string]Process
	// Poll is how often the manifest directory is read; default 1s.
	Poll time.Duration

	mu     sync.Mutex
	pods   map[string]*running // by manifest file
	frozen bool
	stop   context.CancelFunc
	done   chan struct{}
}

// Process is what one container runs: a binary, its arguments, its
// environment beyond the emulator's, and its working directory.
type Process struct {
	Bin  string
	Args []string
	Env  []string
	Dir  string
}

type running struct {
	manifest string // its content, to see a change
	cancel   context.CancelFunc
	done     chan struct{}
	status   PodStatus
	pid      int         // the running container's process, 0 when none
	proc     *os.Process // its handle: signals through it never reach a reused PID
}

// maxBackoff caps the restart back-off (the kubelet's is 5 minutes).
const maxBackoff = 10 * time.Second

// Start runs the pods and follows the directory until Stop.
func (r *Runner) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	r.pods, r.stop, r.done = map[string]*running{}, cancel, make(chan struct{})
	r.mu.Unlock()
	go func() {
		defer close(r.done)
		poll := r.Poll
		if poll == 0 {
			poll = time.Second
		}
		for {
			r.mu.Lock()
			frozen := r.frozen
			r.mu.Unlock()
			if !frozen {
				r.sync(ctx)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(poll):
			}
		}
	}()
}

// Stop kills every container and waits for them to exit: the machine is
// gone, or hangs.
func (r *Runner) Stop() {
	r.mu.Lock()
	stop, done := r.stop, r.done
	r.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-done
	r.mu.Lock()
	pods := r.pods
	r.pods = map[string]*running{}
	r.mu.Unlock()
	for _, p := range pods {
		p.cancel()
		<-p.done
	}
}

// Freeze stops every container where it is (SIGSTOP to each process group)
// and stops following the manifests: a hung VM, whose processes hold their
// ports and answer nothing. Stop ends them.
func (r *Runner) Freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = true
	for _, p := range r.pods {
		if p.proc != nil {
			_ = p.proc.Signal(syscall.SIGSTOP)
		}
		p.status.State = "frozen"
	}
}

// PIDs are the processes of the running containers.
func (r *Runner) PIDs() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, p := range r.pods {
		if p.pid > 0 && p.status.State == "running" {
			out = append(out, p.pid)
		}
	}
	return out
}

// Status lists the pods, by name.
func (r *Runner) Status() []PodStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []PodStatus
	for _, p := range r.pods {
		st := p.status
		if p.pid > 0 && st.State == "running" {
			st.CPUSeconds = ProcCPUSeconds(p.pid)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sync starts pods whose manifest appeared or changed and stops those
// whose manifest is gone, as the kubelet does.
func (r *Runner) sync(ctx context.Context) {
	entries, _ := os.ReadDir(r.Manifests)
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.Manifests, e.Name()))
		if err != nil {
			continue
		}
		seen[e.Name()] = true
		r.mu.Lock()
		cur := r.pods[e.Name()]
		r.mu.Unlock()
		if cur != nil && cur.manifest == string(data) {
			continue
		}
		if cur != nil {
			cur.cancel()
			<-cur.done
		}
		manifest := string(data)
		r.start(ctx, e.Name(), strings.TrimSuffix(e.Name(), ".yaml"), manifest, func() (Process, error) { return r.container(manifest) })
	}
	for name, proc := range r.Processes {
		key := "process:" + name
		seen[key] = true
		r.mu.Lock()
		cur := r.pods[key]
		r.mu.Unlock()
		if cur == nil {
			r.start(ctx, key, name, "", func() (Process, error) { return proc, nil })
		}
	}
	r.mu.Lock()
	var gone []*running
	for file, p := range r.pods {
		if !seen[file] {
			gone = append(gone, p)
			delete(r.pods, file)
		}
	}
	r.mu.Unlock()
	for _, p := range gone { // without the lock: a pod's loop takes it as it ends
		p.cancel()
		<-p.done
	}
}

// start runs a pod (key: its manifest file) named name, whose container
// resolve gives, restarting it with the kubelet's back-off.
func (r *Runner) start(ctx context.Context, key, name, manifest string, resolve func() (Process, error)) {
	pctx, cancel := context.WithCancel(ctx)
	p := &running{manifest: manifest, cancel: cancel, done: make(chan struct{}), status: PodStatus{Name: name, State: "waiting"}}
	r.mu.Lock()
	r.pods[key] = p
	r.mu.Unlock()
	go func() {
		defer close(p.done)
		proc, err := resolve()
		if err != nil {
			r.set(p, "failed", err)
			<-pctx.Done()
			return
		}
		r.set(p, "waiting", nil)
		backoff := time.Second // the first restart (the kubelet waits 10 s)
		for pctx.Err() == nil {
			started := time.Now()
			err := r.run(pctx, p, proc)
			if pctx.Err() != nil {
				return
			}
			r.mu.Lock()
			p.status.Restarts++
			r.mu.Unlock()
			r.set(p, "waiting", fmt.Errorf("exited after %s: %v", time.Since(started).Round(time.Millisecond), err))
			if time.Since(started) > maxBackoff {
				backoff = time.Second
			}
			select {
			case <-pctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}()
}

func (r *Runner) set(p *running, state string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.status.State, p.status.Error = state, ""
	if err != nil {
		p.status.Error = err.Error()
	}
}

// container reads a manifest's one container: its binary, arguments and
// environment.
func (r *Runner) container(manifest string) (Process, error) {
	var m podManifest
	if err := yaml.Unmarshal([]byte(manifest), &m); err != nil {
		return Process{}, fmt.Errorf("read the manifest: %w", err)
	}
	if len(m.Spec.Containers) != 1 || !m.Spec.HostNetwork {
		return Process{}, fmt.Errorf("pod %s: the stand-in runs host-network pods of one container", m.Metadata.Name)
	}
	c := m.Spec.Containers[0]
	bin, err := r.Binaries.Resolve(c.Image)
	if err != nil {
		return Process{}, err
	}
	// No command runs the image's entrypoint: its binary.
	if len(c.Command) > 0 && filepath.Base(c.Command[0]) != filepath.Base(bin) {
		return Process{}, fmt.Errorf("pod %s: its command %v is not the image's binary %s", m.Metadata.Name, c.Command, filepath.Base(bin))
	}
	var args []string
	if len(c.Command) > 0 {
		args = append(args, c.Command[1:]...)
	}
	args = append(args, c.Args...)
	args, err = r.mapArgs(filepath.Base(bin), args)
	if err != nil {
		return Process{}, fmt.Errorf("pod %s: %w", m.Metadata.Name, err)
	}
	proc := Process{Bin: bin, Args: args}
	for _, e := range c.Env {
		v := e.Value
		if name, path, ok := strings.Cut(v, "--kubeconfig="); ok && r.PortOffset != 0 {
			mapped, err := r.mapKubeconfig(path)
			if err != nil {
				return Process{}, fmt.Errorf("pod %s: %w", m.Metadata.Name, err)
			}
			v = name + "--kubeconfig=" + mapped
		}
		proc.Env = append(proc.Env, e.Name+"="+v)
	}
	if filepath.Base(bin) == AddonManagerScript {
		// The image's entrypoint is a bash script that finds
		// kube-addons.sh in its working directory, and kubectl where
		// KUBECTL_BIN says.
		proc = Process{Bin: "/bin/bash", Args: append([]string{bin}, args...), Dir: r.Binaries.Dir,
			Env: append(proc.Env, "KUBECTL_BIN="+filepath.Join(r.Binaries.Dir, "kubectl"))}
	}
	return proc, nil
}

// run runs the container once, until it exits or ctx ends (then it and
// every process it started are killed).
func (r *Runner) run(ctx context.Context, p *running, proc Process) error {
	if err := os.MkdirAll(r.LogDir, 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(r.LogDir, p.status.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := Command(r.Hostname, proc.Bin, proc.Args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = proc.Dir
	if len(proc.Env) > 0 {
		cmd.Env = append(os.Environ(), proc.Env...)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.mu.Lock()
	p.pid, p.proc = cmd.Process.Pid, cmd.Process
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		p.pid, p.proc = 0, nil
		r.mu.Unlock()
	}()
	r.set(p, "running", nil)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
		// Through the process's handle (a pidfd on Linux), so a process
		// that already exited cannot have its PID, reused, signalled.
		_ = cmd.Process.Kill()
		<-exited
		return errors.New("stopped")
	}
}
