package machine

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/sim/kubelet"
)

// Machine is one emulated VM.
type Machine struct {
	Name     string            // its host name: the instance's name, as a VM's
	Root     string            // its directory: the VM's /
	IP       string            // its internal IP (a loopback address here)
	Metadata map[string]string // its instance attributes at boot
	// MetadataNow, when set, gives the instance's attributes as they are
	// now (a setMetadata on the running instance), as GCE's metadata
	// server serves them; else Metadata is served.
	MetadataNow func() map[string]string
	// DataDisk is the directory of its master-pd disk ("" for none).
	DataDisk string
	Binaries *kubelet.Binaries
	// PortOffset moves the ports below 1024 its pods serve on (see
	// kubelet.Runner); 0 where this process may bind them.
	PortOffset int
	// ServiceAccount is the email the VM runs as, and Token the access
	// token its metadata server hands out for it (nil: none).
	ServiceAccount string
	Token          func(email string) string

	mu      sync.Mutex
	md      *http.Server
	kubelet *kubelet.Runner
}

// standIns are the scripts that stand for a VM's own tools. Each records
// its arguments; the disk tools treat the disk's directory as the disk.
var standIns = map[string]string{
	// No init here: asked to start the kubelet, it is recorded, and the
	// machine starts the kubelet stand-in once the script ends.
	"systemctl":  `exit 0`,
	"blkid":      `[ -e "$1/.formatted" ]`,
	"mkfs.ext4":  `for a; do d="$a"; done; touch "$d/.formatted"`,
	"mountpoint": `[ -L "$2" ]`,
	"mount": `src="${*: -2:1}"; dst="${*: -1}"
rmdir "$dst" 2>/dev/null || true; ln -sfn "$src" "$dst"`,
	// The container runtime's client: a pull is a no-op (the machine has
	// the binaries), a run of a one-off container runs its command with the
	// binary of that name (etcdutl of the etcd image), on this machine's
	// paths (its bind mounts name the same path inside and out).
	"ctr": `while [[ $# -gt 0 && "$1" != run ]]; do shift; done
[[ "$1" == run ]] || exit 0
shift
while [[ "$1" == --* ]]; do case "$1" in --mount) shift 2 ;; *) shift ;; esac; done
shift 2
cmd="$1"; shift
exec "$KUBEHA_BINARIES/${cmd##*/}" "$@"`,
	"iptables": `rules="$KUBEHA_ROOT/var/lib/iptables-rules"; mkdir -p "${rules%/*}"
case "$2" in
-C) shift 2; grep -qxF "$*" "$rules" 2>/dev/null ;;
-A) shift 2; echo "$*" >>"$rules" ;;
esac`,
}

func (m *Machine) path(rel string) string { return filepath.Join(m.Root, rel) }

// Boot serves the metadata, runs the startup script and starts the kubelet
// stand-in. A script that fails is the machine's failed boot: its output is
// in the error, and nothing was started.
func (m *Machine) Boot(ctx context.Context) error {
	for _, d := range []string{"stand-ins", "var/log", "dev/disk/by-id"} {
		if err := os.MkdirAll(m.path(d), 0o755); err != nil {
			return fmt.Errorf("boot %s: %w", m.IP, err)
		}
	}
	for name, body := range standIns {
		script := "#!/bin/bash\necho \"" + name + " $*\" >>\"$KUBEHA_ROOT/var/log/stand-ins.log\"\n" + body + "\n"
		if err := os.WriteFile(m.path("stand-ins/"+name), []byte(script), 0o755); err != nil {
			return fmt.Errorf("boot %s: %w", m.IP, err)
		}
	}
	disk := m.path("dev/disk/by-id/google-master-pd")
	os.Remove(disk)
	if m.DataDisk != "" {
		if err := os.Symlink(m.DataDisk, disk); err != nil {
			return fmt.Errorf("attach master-pd: %w", err)
		}
	}
	mdAddr, err := m.serveMetadata()
	if err != nil {
		return err
	}
	script := m.path("var/lib/google/startup-script")
	os.MkdirAll(filepath.Dir(script), 0o755)
	if err := os.WriteFile(script, []byte(m.Metadata["startup-script"]), 0o755); err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	env := []string{"KUBEHA_ROOT=" + m.Root, "KUBEHA_BINARIES=" + m.Binaries.Dir, "GCE_METADATA_HOST=" + mdAddr, "PATH=" + m.path("stand-ins") + ":" + os.Getenv("PATH")}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out // one writer: exec writes it from one goroutine
	err = cmd.Run()
	os.WriteFile(m.path("var/log/startup-script.log"), out.Bytes(), 0o644)
	if err != nil {
		return fmt.Errorf("the startup script of %s failed (%v): %s", m.IP, err, lastLines(out.String(), 5))
	}
	if m.Binaries == nil {
		return nil
	}
	if !m.kubeletStarted() {
		return fmt.Errorf("the startup script of %s did not start the kubelet (systemctl was not asked to)", m.IP)
	}
	k := &kubelet.Runner{Manifests: m.path("etc/kubernetes/manifests"), Binaries: m.Binaries, Address: m.IP, LogDir: m.path("var/log/pods"), Poll: 500 * time.Millisecond,
		PortOffset: m.PortOffset, Hostname: m.Name}
	node, err := m.nodeKubelet(k)
	if err != nil {
		return fmt.Errorf("boot %s: %w", m.IP, err)
	}
	k.Processes, err = m.services(env)
	if err != nil {
		return fmt.Errorf("boot %s: %w", m.IP, err)
	}
	if node != nil {
		k.Processes["kubelet"] = *node
	}
	k.Start()
	m.mu.Lock()
	m.kubelet = k
	m.mu.Unlock()
	return nil
}

// Halt stops every process of the machine, as a dead VM.
func (m *Machine) Halt() {
	m.mu.Lock()
	k, md := m.kubelet, m.md
	m.kubelet, m.md = nil, nil
	m.mu.Unlock()
	if k != nil {
		k.Stop()
	}
	if md != nil {
		md.Close()
	}
}

// Freeze hangs the machine: every process stops where it is, holding its
// ports and answering nothing, as a VM that hangs. Halt ends it.
func (m *Machine) Freeze() {
	m.mu.Lock()
	k := m.kubelet
	m.mu.Unlock()
	if k != nil {
		k.Freeze()
	}
}

// PIDs are the processes of its running containers.
func (m *Machine) PIDs() []int {
	if k := m.runningKubelet(); k != nil {
		return k.PIDs()
	}
	return nil
}

// Pods are the static pods the kubelet stand-in runs.
func (m *Machine) Pods() []kubelet.PodStatus {
	if k := m.runningKubelet(); k != nil {
		return k.Status()
	}
	return nil
}

// runningKubelet is the kubelet stand-in, nil before the startup script
// started it.
func (m *Machine) runningKubelet() *kubelet.Runner {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kubelet
}

// kubeletStarted says whether the startup script asked init to start the
// kubelet.
func (m *Machine) kubeletStarted() bool {
	for _, c := range m.StandInCalls() {
		if c == "systemctl enable --now kubelet.service" || c == "systemctl restart kubelet.service" {
			return true
		}
	}
	return false
}

// StandInCalls is what the stand-ins were asked, a line each.
func (m *Machine) StandInCalls() []string {
	data, _ := os.ReadFile(m.path("var/log/stand-ins.log"))
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// serveMetadata serves the instance attributes as GCE's metadata server
// does: only with the Metadata-Flavor: Google header.
func (m *Machine) serveMetadata() (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(m.IP, "0"))
	if err != nil {
		return "", fmt.Errorf("serve the metadata of %s: %w", m.IP, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/computeMetadata/v1/instance/attributes/{key}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
			return
		}
		v, ok := m.waitAttribute(r)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		w.Header().Set("ETag", etagOf(v))
		io.WriteString(w, v)
	})
	// The service account's email and an access token for it, as the
	// startup script asks for them to read its keys from Secret Manager.
	sa := "/computeMetadata/v1/instance/service-accounts/default/"
	mux.HandleFunc(sa+"{what}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
			return
		}
		if m.ServiceAccount == "" || m.Token == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		switch r.PathValue("what") {
		case "email":
			io.WriteString(w, m.ServiceAccount)
		case "token":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":%q,"expires_in":3599,"token_type":"Bearer"}`, m.Token(m.ServiceAccount))
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	m.mu.Lock()
	m.md = srv
	m.mu.Unlock()
	return ln.Addr().String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// attribute is an instance attribute as it is now.
func (m *Machine) attribute(key string) (string, bool) {
	md := m.Metadata
	if m.MetadataNow != nil {
		md = m.MetadataNow()
	}
	v, ok := md[key]
	return v, ok
}

func etagOf(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:8])
}

// waitAttribute answers a request for an attribute as GCE's metadata
// server does: at once, or with wait_for_change=true once its ETag is not
// last_etag (the one of the moment asked, without it), or when
// timeout_sec passes (the value as it is then).
func (m *Machine) waitAttribute(r *http.Request) (string, bool) {
	key := r.PathValue("key")
	v, ok := m.attribute(key)
	q := r.URL.Query()
	if q.Get("wait_for_change") != "true" {
		return v, ok
	}
	last := cmp.Or(q.Get("last_etag"), etagOf(v))
	timeout := time.Duration(cmp.Or(atoiOr(q.Get("timeout_sec"), 0), 300)) * time.Second
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for ok && etagOf(v) == last {
		select {
		case <-r.Context().Done():
			return v, ok
		case <-deadline.C:
			return v, ok
		case <-tick.C:
			v, ok = m.attribute(key)
		}
	}
	return v, ok
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return def
	}
	return n
}
