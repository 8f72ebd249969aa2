package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kubeha/kubeha/sim/kubelet"
	"github.com/kubeha/kubeha/sim/machine"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
)

// MemberStatus is what the emulator knows of one master's etcd member.
type MemberStatus struct {
	Instance string `json:"instance"` // projects/P/zones/Z/instances/N
	IP       string `json:"ip"`
	Name     string `json:"name,omitempty"`
	State    string `json:"state"` // booting, starting, ready, failed, stopped
	Error    string `json:"error,omitempty"`
	Restarts int    `json:"restarts"`
	// ControlPlane says what the master runs: "etcd only" (an embedded
	// member), or "Kubernetes v1.37.2" (the startup script and static pods
	// of the real binaries), whose pods are then listed.
	ControlPlane string              `json:"controlPlane"`
	Pods         []kubelet.PodStatus `json:"pods,omitempty"`
}

// member supervises the embedded etcd of one RUNNING instance, restarting it
// with backoff when it exits, as a VM's kubelet restarts a static pod.
type member struct {
	key, ip   string
	cfg       *metadata.Etcd
	tls       *metadata.TLS
	dataDir   string // the disk's directory; etcd's data is dataDir/etcd
	filesDir  string // the instance's own files: TLS, log
	bootDelay time.Duration
	tickMs    uint // etcd's heartbeat interval
	electMs   uint // etcd's election timeout
	// inUseLogged: the member's address was found taken, and said so.
	inUseLogged bool
	// crash receives an etcd panic or fatal error (see logger).
	crash chan error

	cancel context.CancelFunc
	done   chan struct{}

	// machine is set when the master boots through its startup script.
	machine *machine.Machine
	// fetch reads a Cloud Storage object as the instance's service account
	// (a restore's snapshot).
	fetch func(bucket, object string) ([]byte, error)

	mu     sync.Mutex
	status MemberStatus
}

func (m *member) set(state string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status.State = state
	m.status.Error = ""
	if err != nil {
		m.status.Error = err.Error()
	}
}

func (m *member) stop() {
	m.cancel()
	<-m.done
}

// diskDir is where a disk's data lives.
func (s *Server) diskDir(diskKey string) string {
	return filepath.Join(s.root, "disks", strings.ReplaceAll(diskKey, "/", "_"))
}

func (s *Server) instanceDir(key string) string {
	return filepath.Join(s.root, "instances", strings.ReplaceAll(key, "/", "_"))
}

// bootLocked starts the etcd member of a RUNNING instance whose metadata has
// kubeha-etcd. Instances without it are not masters and run nothing.
func (s *Server) bootLocked(key string) {
	if s.members[key] != nil {
		return
	}
	in := s.w.Instances[key]
	if in == nil || in.Status != "RUNNING" || len(in.NetworkInterfaces) == 0 {
		return
	}
	etcdDoc, tlsDoc, ok := metadataItems(in)
	if !ok {
		return
	}
	m := &member{
		key:       key,
		ip:        in.NetworkInterfaces[0].NetworkIP,
		dataDir:   s.dataDirLocked(in),
		filesDir:  s.instanceDir(key),
		bootDelay: s.latencyOf("boot"),
		tickMs:    cmp.Or(s.opts.EtcdTickMs, 250),
		electMs:   cmp.Or(s.opts.EtcdElectionMs, 2500),
		done:      make(chan struct{}),
		crash:     make(chan error, 1),
	}
	m.status = MemberStatus{Instance: key, IP: m.ip, State: "booting", ControlPlane: "etcd only"}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	s.members[key] = m
	if slices.Contains(s.faults.BootFailures, in.Name) {
		// The VM runs; its guest never gets as far as etcd.
		s.serialLineLocked(key, startupFailed(1, "the boot failed (POST /sim/v1/faults bootFailures)"))
		m.set("failed", fmt.Errorf("the guest of %s failed to boot (POST /sim/v1/faults bootFailures): its startup script never ran", in.Name))
		close(m.done)
		return
	}
	if s.opts.Kubernetes != nil {
		items := allItems(in)
		version := metadata.KubeEnvValue(items[metadata.KeyKubeEnv], "KUBERNETES_VERSION")
		bins, err := s.opts.Kubernetes.Of(version)
		if err != nil {
			// As a VM whose startup script cannot pull its images.
			s.serialLineLocked(key, startupFailed(1, err.Error()))
			m.set("failed", fmt.Errorf("the guest of %s cannot run Kubernetes %s: %w", in.Name, version, err))
			close(m.done)
			return
		}
		m.machine = &machine.Machine{Name: in.Name, Root: filepath.Join(m.filesDir, "root"), IP: m.ip, Metadata: items, MetadataNow: s.metadataOf(key), DataDisk: m.dataDir, Binaries: bins,
			PortOffset: s.portOffset, ServiceAccount: serviceAccountOf(in), Token: s.token}
		m.status.ControlPlane = "Kubernetes " + bins.Kubernetes
		if cfg, err := metadata.ParseEtcd(etcdDoc); err == nil {
			m.status.Name = cfg.Name
		}
		go m.runMachine(ctx, s.log.With("instance", key, "ip", m.ip))
		return
	}
	cfg, err := metadata.ParseEtcd(etcdDoc)
	if err == nil && tlsDoc != "" {
		m.tls, err = metadata.ParseTLS(tlsDoc)
	}
	if err == nil && m.tls != nil {
		err = s.readKeysLocked(in, m.tls)
	}
	if err != nil {
		// A VM with broken metadata boots, and its etcd never starts.
		m.set("failed", err)
		close(m.done)
		return
	}
	m.cfg = cfg
	m.status.Name = cfg.Name
	email := serviceAccountOf(in)
	m.fetch = func(bucket, object string) ([]byte, error) { return s.readObject(email, bucket, object) }
	go m.run(ctx, s.log.With("member", cfg.Name, "ip", m.ip))
}

// runMachine boots a master as a VM does: after its boot time, the
// startup script runs, and the kubelet stand-in runs its static pods,
// until the machine is stopped, deleted or crashed (then every process of
// it stops at once).
func (m *member) runMachine(ctx context.Context, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) {
	defer close(m.done)
	if !m.booted(ctx) {
		return
	}
	m.set("starting", nil)
	if err := os.MkdirAll(m.machine.Root, 0o755); err != nil {
		m.set("failed", err)
		return
	}
	if err := m.machine.Boot(ctx); err != nil {
		log.Error("the master's boot failed", "err", err)
		m.set("failed", err)
		<-ctx.Done()
		m.machine.Halt()
		return
	}
	m.set("ready", nil)
	<-ctx.Done()
	m.machine.Halt()
	m.set("stopped", nil)
}

func metadataItems(in *compute.Instance) (etcdDoc, tlsDoc string, ok bool) {
	if in.Metadata == nil {
		return "", "", false
	}
	for _, it := range in.Metadata.Items {
		if it.Value == nil {
			continue
		}
		switch it.Key {
		case metadata.KeyEtcd:
			etcdDoc, ok = *it.Value, true
		case metadata.KeyTLS:
			tlsDoc = *it.Value
		}
	}
	return etcdDoc, tlsDoc, ok
}

// dataDirLocked is the directory of the disk attached as master-pd, or of
// the boot disk when there is none.
func (s *Server) dataDirLocked(in *compute.Instance) string {
	project := strings.Split(strings.TrimPrefix(in.SelfLink, canonicalBase), "/")[1]
	var boot string
	for _, d := range in.Disks {
		dk := relPath(project, d.Source)
		if d.DeviceName == "master-pd" {
			return s.diskDir(dk)
		}
		if d.Boot {
			boot = s.diskDir(dk)
		}
	}
	if boot != "" {
		return boot
	}
	return s.instanceDir(relPath(project, in.SelfLink))
}

func (m *member) run(ctx context.Context, log interface {
	Info(string, ...any)
	Warn(string, ...any)
	Error(string, ...any)
}) {
	defer close(m.done)
	if !m.booted(ctx) {
		return
	}
	m.waitForEarlier(ctx)
	backoff := 200 * time.Millisecond
	for {
		m.set("starting", nil)
		e, err := m.start()
		if err == nil {
			go func() {
				select {
				case <-e.Server.ReadyNotify():
					m.set("ready", nil)
				case <-e.Server.StopNotify():
				}
			}()
			select {
			case <-ctx.Done():
				closeEtcd(e)
				m.set("stopped", nil)
				return
			case err = <-e.Err():
			case err = <-m.crash:
			case <-e.Server.StopNotify():
				err = errors.New("etcd server stopped (removed from the cluster, or a fatal error: see etcd.log)")
			}
			closeEtcd(e)
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			// Another process took this member's address after it was
			// handed out: the member cannot start until it is gone.
			holder := cmp.Or(listenerOn(m.ip), "another process")
			err = fmt.Errorf("etcd member cannot listen on %s: %s holds it: stop it: %w", m.ip, holder, err)
			if !m.inUseLogged {
				log.Error("etcd member cannot listen: stop the process that holds its address", "address", m.ip, "holder", holder)
				m.inUseLogged = true
			}
		}
		log.Warn("etcd member exited; restarting", "err", err, "backoff", backoff)
		m.mu.Lock()
		m.status.State, m.status.Error = "failed", err.Error()
		m.status.Restarts++
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			m.set("stopped", nil)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// logger is the member's etcd log (etcd.log in its files). etcd panics or
// exits on some errors (v3.7.3 panics when a member that was just removed
// answers a Status call); on a VM that ends the etcd process, here it
// would end the emulator and every member in it. So a panic or a fatal
// error ends the goroutine that met it and crashes this member alone:
// its supervisor (run) stops and restarts it, as the kubelet restarts a
// crashed etcd.
func (m *member) logger() (*zap.Logger, error) {
	file := filepath.Join(m.filesDir, "etcd.log")
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	cfg.Sampling = nil
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{file}, []string{file}
	hook := crashHook{m.crash}
	lg, err := cfg.Build(zap.WithPanicHook(hook), zap.WithFatalHook(hook))
	if err != nil {
		return nil, fmt.Errorf("etcd log of %s: %w", m.cfg.Name, err)
	}
	return lg, nil
}

// crashHook reports an etcd panic or fatal error to the member's
// supervisor and ends the goroutine that met it.
type crashHook struct{ crash chan error }

func (h crashHook) OnWrite(ce *zapcore.CheckedEntry, _ []zapcore.Field) {
	select {
	case h.crash <- fmt.Errorf("etcd crashed: %s", ce.Message):
	default:
	}
	runtime.Goexit()
}

// closeEtcd stops a member as a VM stops: abruptly. A server that never
// became ready (it cannot reach a quorum) is hard-stopped first, because
// embed's Close waits for its client servers, which wait for readiness.
func closeEtcd(e *embed.Etcd) {
	select {
	case <-e.Server.ReadyNotify():
	default:
		e.Server.HardStop()
	}
	e.Close()
}

// start starts etcd as the instance's startup would: listening on the
// instance's own IP at the ports of its advertised URLs, with peer and client
// TLS (client-certificate auth) when kubeha-tls is set.
func (m *member) start() (*embed.Etcd, error) {
	peer, err := url.Parse(m.cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("peer URL: %w", err)
	}
	client, err := url.Parse(m.cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("client URL: %w", err)
	}
	if err := os.MkdirAll(m.filesDir, 0o700); err != nil {
		return nil, fmt.Errorf("create instance dir: %w", err)
	}
	if err := os.MkdirAll(m.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = m.cfg.Name
	cfg.Dir = filepath.Join(m.dataDir, "etcd")
	cfg.ListenPeerUrls = []url.URL{{Scheme: peer.Scheme, Host: m.ip + ":" + peer.Port()}}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.ListenClientUrls = []url.URL{{Scheme: client.Scheme, Host: m.ip + ":" + client.Port()}}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.InitialCluster = m.cfg.InitialCluster
	cfg.ClusterState = m.cfg.InitialClusterState
	cfg.InitialClusterToken = "kubeha"
	if r := m.cfg.Restore; r != nil {
		if err := m.restore(r); err != nil {
			return nil, err
		}
		cfg.InitialClusterToken = r.Token
	}
	if m.cfg.MaxLearners > 0 {
		cfg.MaxLearners = m.cfg.MaxLearners
	}
	lg, err := m.logger()
	if err != nil {
		return nil, err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	cfg.Metrics = "basic"
	// See Options.EtcdTickMs.
	cfg.TickMs, cfg.ElectionMs = m.tickMs, m.electMs
	if m.tls != nil {
		dir := filepath.Join(m.filesDir, "tls")
		files := map[string]string{"ca.crt": m.tls.CA, "peer.crt": m.tls.PeerCert, "peer.key": m.tls.PeerKey,
			"server.crt": m.tls.ServerCert, "server.key": m.tls.ServerKey}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create TLS dir: %w", err)
		}
		for name, pem := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(pem), 0o600); err != nil {
				return nil, fmt.Errorf("write TLS file %s: %w", name, err)
			}
		}
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"),
			TrustedCAFile: filepath.Join(dir, "ca.crt"), ClientCertAuth: true}
		// On a VM a peer connects from its own IP, which its certificate
		// names. In the emulator every outgoing connection leaves from
		// 127.0.0.1 whatever member makes it, so etcd's check that a peer's
		// certificate names its source address (and the DNS lookups it falls
		// back to) is skipped; peers still need a certificate of the CA.
		cfg.PeerTLSInfo = transport.TLSInfo{CertFile: filepath.Join(dir, "peer.crt"), KeyFile: filepath.Join(dir, "peer.key"),
			TrustedCAFile: filepath.Join(dir, "ca.crt"), ClientCertAuth: true, SkipClientSANVerify: true}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s: %w", m.cfg.Name, err)
	}
	return e, nil
}

// Members reports every emulated member, sorted by instance.
func (s *Server) Members() []MemberStatus {
	s.mu.Lock()
	var out []MemberStatus
	for _, m := range s.members {
		m.mu.Lock()
		st := m.status
		m.mu.Unlock()
		if m.machine != nil {
			st.Pods = m.machine.Pods()
		}
		out = append(out, st)
	}
	for _, m := range s.frozen {
		m.mu.Lock()
		st := m.status
		m.mu.Unlock()
		st.Pods = m.machine.Pods()
		out = append(out, st)
	}
	for k, in := range s.w.Instances {
		if s.w.Crashed[k] && in.Status == "RUNNING" && s.frozen[k] == nil {
			ip := ""
			if len(in.NetworkInterfaces) > 0 {
				ip = in.NetworkInterfaces[0].NetworkIP
			}
			out = append(out, MemberStatus{Instance: k, IP: ip, State: "crashed"})
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out
}

// metadataOf serves an instance's attributes as they are now.
func (s *Server) metadataOf(key string) func() map[string]string {
	return func() map[string]string {
		s.mu.Lock()
		defer s.mu.Unlock()
		if in := s.w.Instances[key]; in != nil {
			return allItems(in)
		}
		return nil
	}
}
