package sim

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kubeha/kubeha/sim/kubelet"

	"google.golang.org/api/option"

	compute "google.golang.org/api/compute/v1"
)

// Options configure an emulator.
type Options struct {
	// Listen is the address to serve on; default 127.0.0.1:0 (any free port).
	Listen string
	// Dir persists the emulator's state and the etcd data of its disks. Empty
	// means in memory, with etcd data in a temporary directory removed on Close.
	Dir string
	// Profile names the latency profile: "fast" (default) or "gce".
	Profile string
	// TimeScale multiplies every latency of the profile (0.05 runs the gce
	// profile at 1/20 of real time); 0 means 1.
	TimeScale float64
	// WaitTimeout is the longest an operations.wait call blocks before it
	// returns the operation still RUNNING; default 2 minutes, as GCE.
	WaitTimeout time.Duration
	// Subnet is the range of internal and instance IPs; default the first
	// /16 of 127.0.0.0/8 no other emulator of this machine holds
	// (127.0.0.0/16, whose first master gets 127.0.0.2, when it runs alone).
	// A loaded state keeps its own.
	Subnet string
	// Regions maps each emulated region to its zones; default DefaultRegions.
	Regions map[string][]string
	// EtcdTickMs and EtcdElectionMs are the members' heartbeat interval and
	// election timeout; default 250 and 2500, 2.5 times etcd's defaults,
	// because many emulated members share one machine's CPU (and tests run
	// them under the race detector) and should not hold elections caused by
	// starvation alone. Benchmarks that model production set etcd's 100 and
	// 1000.
	EtcdTickMs, EtcdElectionMs uint
	// Logger receives the emulator's own log; default discards.
	Logger *slog.Logger
	// Kubernetes, when set, makes every master a machine that runs the
	// real startup script and, through the kubelet stand-in, the whole
	// control plane with these binaries (make kube-binaries). Without it a
	// master runs an embedded etcd member only.
	Kubernetes kubelet.Releases
	// MapLowPorts serves the ports below 1024 (the API's 443, at the
	// masters and at the static IPs) LowPortOffset higher, as the emulator
	// does by itself when it may not bind them (an ordinary user).
	MapLowPorts bool
}

// LowPortOffset is how far the emulator moves a port below 1024 when it
// may not bind it: 443 is served on 10443.
const LowPortOffset = kubelet.LowPortOffset

// Server is a running emulator.
type Server struct {
	opts    Options
	root    string // where disks and member files live
	tmpRoot bool
	log     *slog.Logger

	// claims are the loopback ranges this emulator hands out, held
	// against other emulators of this machine (claims.go).
	claims *claims

	mu      sync.Mutex
	w       *world
	latency map[string]time.Duration // unscaled, by method ("instances.insert", "default", "boot")
	faults  faultConfig
	rng     *rand.Rand
	// tokenKey signs the access tokens the machines' metadata servers
	// hand out (iam.go).
	tokenKey [32]byte
	total    int
	byMethod map[string]int
	// noRequestID counts the inserts that carried no requestId.
	noRequestID map[string]int
	waiters     map[string]chan struct{} // operation key -> closed at DONE
	members     map[string]*member       // instance key -> its etcd member
	serial      map[string][]byte        // instance key -> its serial port 1
	frozen      map[string]*member       // instance key -> its hung machine (crashed)
	// shuttingDown holds the guests of instances being stopped or deleted:
	// a guest shuts down as the operation starts, and the operation is
	// DONE once it is down (see shutDownLocked).
	shuttingDown map[string]chan struct{}
	timers       map[string]*time.Timer
	balancer     *balancer // the static IPs' network path
	nodes        *nodePool // the hollow worker nodes
	// portOffset moves the ports below 1024 (LowPortOffset or 0).
	portOffset int

	ln     net.Listener
	srv    *http.Server
	base   string // http://ADDR/compute/v1/
	closed chan struct{}
	wg     sync.WaitGroup
}

type faultConfig struct {
	Rate       float64  `json:"rate"`
	Codes      []int    `json:"codes"`
	RetryAfter string   `json:"retryAfter,omitempty"` // optional Retry-After on 429s, e.g. "1s"
	Methods    []string `json:"methods,omitempty"`    // restrict to these methods; empty means all
	// After makes a faulted request fail after the emulator has done its
	// work, as a timeout or a 5xx after GCE acted does: the change is made,
	// the caller hears only the error.
	After bool `json:"after,omitempty"`
	// BootFailures names instances whose guest fails to boot: the VM runs,
	// and its startup never starts etcd (nor anything else), as after a
	// startup script that fails. Names may be given before the instances
	// exist.
	BootFailures []string `json:"bootFailures,omitempty"`
}

// DefaultSubnet is the internal range of an emulator given none, when no
// other emulator of this machine holds it (else the next free /16).
const DefaultSubnet = "127.0.0.0/16"

// Start starts an emulator and returns once it serves. When opts.Dir holds
// the state of an earlier run, it is loaded and the RUNNING masters boot
// again from their disks.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = 2 * time.Minute
	}
	if opts.TimeScale == 0 {
		opts.TimeScale = 1
	}
	if opts.Regions == nil {
		opts.Regions = DefaultRegions
	}
	profile, err := Profile(opts.Profile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:         opts,
		log:          opts.Logger,
		latency:      profile,
		rng:          rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)),
		tokenKey:     randomKey(),
		byMethod:     map[string]int{},
		noRequestID:  map[string]int{},
		waiters:      map[string]chan struct{}{},
		members:      map[string]*member{},
		serial:       map[string][]byte{},
		frozen:       map[string]*member{},
		timers:       map[string]*time.Timer{},
		shuttingDown: map[string]chan struct{}{},
		closed:       make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.claims = newClaims(opts.Dir)
	loaded := false
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("create emulator dir: %w", err)
		}
		s.root = opts.Dir
		w, err := loadWorld(opts.Dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			s.w, loaded = w, true
		}
	} else {
		dir, err := os.MkdirTemp("", "kubeha-sim-")
		if err != nil {
			return nil, fmt.Errorf("create emulator temp dir: %w", err)
		}
		s.root, s.tmpRoot = dir, true
	}
	if err := s.claimRanges(loaded); err != nil {
		s.claims.release()
		s.cleanup()
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		s.claims.release()
		s.cleanup()
		return nil, fmt.Errorf("emulator listen on %s: %w", opts.Listen, err)
	}
	s.ln = ln
	s.base = "http://" + ln.Addr().String() + "/compute/v1/"
	s.srv = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("emulator serve", "err", err)
		}
	}()
	if opts.MapLowPorts || !kubelet.MayBindLowPorts() {
		s.portOffset = LowPortOffset
	}
	s.resume()
	s.startBalancer()
	s.nodes = newNodePool(s.root, opts.Kubernetes)
	if err := s.nodes.resume(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// resume finishes operations left unfinished by an earlier run and boots the
// RUNNING masters again.
func (s *Server) resume() {
	s.mu.Lock()
	var pending []string
	for k, o := range s.w.Operations {
		if o.Op.Status != "DONE" {
			pending = append(pending, k)
			s.waiters[k] = make(chan struct{})
		}
	}
	var boot []string
	for k, in := range s.w.Instances {
		if in.Status == "RUNNING" && !s.w.Crashed[k] {
			boot = append(boot, k)
		}
	}
	s.mu.Unlock()
	sort.Strings(boot)
	for _, k := range boot {
		s.mu.Lock()
		s.bootLocked(k)
		s.mu.Unlock()
	}
	for _, k := range pending {
		s.finishOp(k)
	}
}

// URL is the base URL of the emulator, http://ADDR.
func (s *Server) URL() string { return strings.TrimSuffix(s.base, "/compute/v1/") }

// Endpoint is the compute/v1 base URL to give the client, http://ADDR/compute/v1/.
func (s *Server) Endpoint() string { return s.base }

// ClientOptions are the compute/v1 client options that reach this emulator.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(s.base), option.WithoutAuthentication()}
}

// Client returns a compute/v1 client of this emulator.
func (s *Server) Client(ctx context.Context) (*compute.Service, error) {
	return compute.NewService(ctx, s.ClientOptions()...)
}

// Close stops serving, stops every member and saves the state.
func (s *Server) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
	}
	close(s.closed)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.mu.Lock()
	for _, t := range s.timers {
		t.Stop()
	}
	members := make([]*member, 0, len(s.members))
	for _, m := range s.members {
		members = append(members, m)
	}
	for _, m := range s.frozen {
		members = append(members, m)
	}
	s.members, s.frozen = map[string]*member{}, map[string]*member{}
	var shutting []chan struct{}
	for _, ch := range s.shuttingDown {
		shutting = append(shutting, ch)
	}
	saveErr := s.w.save(s.opts.Dir)
	s.mu.Unlock()
	for _, ch := range shutting {
		<-ch
	}
	if s.nodes != nil {
		s.nodes.stop()
	}
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() { defer wg.Done(); m.stop() }()
	}
	wg.Wait()
	s.wg.Wait()
	s.claims.release()
	s.cleanup()
	return errors.Join(err, saveErr)
}

func (s *Server) cleanup() {
	if s.tmpRoot {
		os.RemoveAll(s.root)
	}
}

// persistLocked saves the state; a failure is logged (the in-memory state is
// still right, and the next change saves again).
func (s *Server) persistLocked() {
	if err := s.w.save(s.opts.Dir); err != nil {
		s.log.Error("persist emulator state", "err", err)
	}
}

// latencyOf is the scaled latency of a method.
func (s *Server) latencyOf(method string) time.Duration {
	d, ok := s.latency[method]
	if !ok {
		d = s.latency["default"]
	}
	return time.Duration(float64(d) * s.opts.TimeScale)
}

// request is one API call, with its path values.
type request struct {
	*http.Request
	project, zone, region, name string
}

func (r *request) decode(v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return errInvalid("read request body: %v", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errInvalid("Invalid JSON payload received. %v", err)
	}
	return nil
}

type handlerFunc func(r *request) (any, error)

// api wraps a compute handler: it counts the request, injects faults,
// validates the zone or region, and writes the response or error.
func (s *Server) api(method string, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, hr *http.Request) {
		key := hr.Method + " " + method
		s.mu.Lock()
		s.total++
		s.byMethod[key]++
		s.ensureProjectLocked(hr.PathValue("project"))
		fault, retryAfter := s.faultLocked(method)
		after := s.faults.After
		s.mu.Unlock()
		if fault != 0 && !after {
			if retryAfter != "" {
				if d, err := time.ParseDuration(retryAfter); err == nil {
					w.Header().Set("Retry-After", fmt.Sprint(int(d.Seconds())))
				}
			}
			faultError(fault).write(w)
			return
		}
		r := &request{Request: hr, project: hr.PathValue("project"), zone: hr.PathValue("zone"), region: hr.PathValue("region")}
		r.name = cmp.Or(hr.PathValue("name"), hr.PathValue("operation"))
		if r.zone != "" && !s.knownZone(r.zone) {
			errInvalid("Invalid value for field 'zone': '%s'. Unknown zone.", r.zone).write(w)
			return
		}
		if r.region != "" && !s.knownRegion(r.region) {
			errInvalid("Invalid value for field 'region': '%s'. Unknown region.", r.region).write(w)
			return
		}
		requestID := hr.URL.Query().Get("requestId")
		if hr.Method != http.MethodGet {
			if done, err := s.repeatedRequest(r.project, method, requestID); err != nil || done != nil {
				if err != nil {
					err.(*apiError).write(w)
					return
				}
				s.writeJSON(w, done)
				return
			}
		}
		resp, err := h(r)
		if op, ok := resp.(*compute.Operation); ok && err == nil && requestID != "" {
			s.rememberRequest(r.project, requestID, op)
		}
		if fault != 0 {
			faultError(fault).write(w) // after the work: the reply is lost
			return
		}
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				ae.write(w)
				return
			}
			(&apiError{http.StatusInternalServerError, "internalError", err.Error()}).write(w)
			return
		}
		s.writeJSON(w, resp)
	}
}

// writeJSON encodes v with selfLinks rewritten to this server.
func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		(&apiError{http.StatusInternalServerError, "internalError", err.Error()}).write(w)
		return
	}
	data = []byte(strings.ReplaceAll(string(data), canonicalBase, s.base))
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(data)
}

func (s *Server) faultLocked(method string) (int, string) {
	f := s.faults
	if f.Rate <= 0 || len(f.Codes) == 0 {
		return 0, ""
	}
	if len(f.Methods) > 0 {
		match := false
		for _, m := range f.Methods {
			match = match || m == method
		}
		if !match {
			return 0, ""
		}
	}
	if s.rng.Float64() >= f.Rate {
		return 0, ""
	}
	return f.Codes[s.rng.IntN(len(f.Codes))], f.RetryAfter
}

func faultError(code int) *apiError {
	switch code {
	case http.StatusTooManyRequests:
		return &apiError{code, "rateLimitExceeded", "Rate Limit Exceeded"}
	case http.StatusServiceUnavailable:
		return &apiError{code, "backendError", "Backend Error"}
	}
	return &apiError{code, "backendError", http.StatusText(code)}
}
