package sim

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	compute "google.golang.org/api/compute/v1"
)

// The emulated network path to a static IP. The emulator's external
// addresses are loopback addresses of this machine, so a client here (curl,
// kubectl, kubeha) reaches them as it would reach GCE's:
//   - an address on an instance's access config (one master) takes that
//     instance's traffic, as GCE's one-to-one NAT does;
//   - an address on a forwarding rule (several masters) spreads each TCP
//     connection over the target pool's instances that pass the pool's
//     legacy HTTP health check, probed at the check's port, path, interval,
//     timeout and thresholds; when none passes, over all of them, as GCE
//     does.
//
// Only the ports the masters serve to clients are forwarded: the forwarding
// rule's port range, and 443 for an access config. A port below 1024 needs
// root or CAP_NET_BIND_SERVICE (or net.ipv4.ip_unprivileged_port_start at
// most 443): without them the emulator serves each such port LowPortOffset
// higher, at the static IPs and at the masters alike (GET /sim/v1/ports
// says so, and kubeha kubeconfig names the port).
type balancer struct {
	s      *Server
	mu     sync.Mutex
	fronts map[string]*front // "ip:port" it listens on
	probes map[string]*probe // pool key + " " + instance key
	warned map[string]bool
}

// front is one listening static IP and port.
type front struct {
	ln       net.Listener
	backends []backend
	next     int
}

// backend is an instance a front may send a connection to: always when it
// has no probe (an access config's instance, a pool without health check),
// else while its probe finds it healthy, looked at as each connection
// comes.
type backend struct {
	addr  string // "ip:port"
	probe *probe
}

// probe is the health of one instance of one target pool.
type probe struct {
	check  // what it asks, as the world says
	cancel context.CancelFunc

	mu      sync.Mutex
	healthy bool
}

const balancerTick = 200 * time.Millisecond

func (s *Server) startBalancer() {
	b := &balancer{s: s, fronts: map[string]*front{}, probes: map[string]*probe{}, warned: map[string]bool{}}
	s.balancer = b
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(balancerTick)
		defer t.Stop()
		for {
			b.reconcile()
			select {
			case <-s.closed:
				b.stop()
				return
			case <-t.C:
			}
		}
	}()
}

// check is a health check of one pool instance, as the world says.
type check struct {
	target, path            string
	interval, timeout       time.Duration
	healthyAfter, unhealthy int
}

// route is a backend a front may send to, with the key of the probe that
// decides (none: always).
type route struct {
	addr, probe string
}

// routes reads the world: each served address with its backends, and the
// probes wanted, by pool and instance key.
func (b *balancer) routes() (map[string][]route, map[string]check) {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	routes := map[string][]route{} // front -> backends
	probes := map[string]check{}
	running := func(ref string) (string, bool) {
		in := s.w.Instances[relPath("", ref)]
		if in == nil || in.Status != "RUNNING" || len(in.NetworkInterfaces) == 0 {
			return "", false
		}
		return in.NetworkInterfaces[0].NetworkIP, true
	}
	for _, in := range s.w.Instances {
		if in.Status != "RUNNING" || len(in.NetworkInterfaces) == 0 {
			continue
		}
		for _, ac := range in.NetworkInterfaces[0].AccessConfigs {
			if listenable(ac.NatIP) {
				port := strconv.Itoa(s.port(443))
				routes[net.JoinHostPort(ac.NatIP, port)] = []route{{addr: net.JoinHostPort(in.NetworkInterfaces[0].NetworkIP, port)}}
			}
		}
	}
	for _, fr := range s.w.ForwardingRules {
		if !listenable(fr.IPAddress) {
			continue
		}
		pool := s.w.TargetPools[relPath("", fr.Target)]
		if pool == nil {
			continue
		}
		port := strings.SplitN(fr.PortRange, "-", 2)[0]
		if port == "" {
			port = "443"
		}
		port = strconv.Itoa(s.port(atoi(port)))
		var hc *compute.HttpHealthCheck
		if len(pool.HealthChecks) > 0 {
			hc = s.w.HealthChecks[relPath("", pool.HealthChecks[0])]
		}
		front := net.JoinHostPort(fr.IPAddress, port)
		for _, ref := range pool.Instances {
			ip, ok := running(ref)
			if !ok {
				continue
			}
			backend := net.JoinHostPort(ip, port)
			if hc == nil {
				routes[front] = append(routes[front], route{addr: backend})
				continue
			}
			pk := relPath("", pool.SelfLink) + " " + relPath("", ref)
			routes[front] = append(routes[front], route{addr: backend, probe: pk})
			probes[pk] = check{target: net.JoinHostPort(ip, strconv.FormatInt(hc.Port, 10)), path: hc.RequestPath,
				interval: secs(hc.CheckIntervalSec, 5), timeout: secs(hc.TimeoutSec, 5),
				healthyAfter: int(max(hc.HealthyThreshold, 1)), unhealthy: int(max(hc.UnhealthyThreshold, 1))}
		}
	}
	return routes, probes
}

func secs(n, def int64) time.Duration {
	if n <= 0 {
		n = def
	}
	return time.Duration(n) * time.Second
}

// listenable says whether an external address is one this machine has.
func listenable(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsLoopback()
}

func (b *balancer) reconcile() {
	routes, wanted := b.routes()
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, p := range b.probes {
		if w, ok := wanted[k]; !ok || w != p.check {
			p.cancel()
			delete(b.probes, k)
		}
	}
	for k, w := range wanted {
		if _, ok := b.probes[k]; !ok {
			b.probes[k] = b.startProbe(w)
		}
	}
	backends := map[string][]backend{}
	for addr, rs := range routes {
		for _, r := range rs {
			backends[addr] = append(backends[addr], backend{addr: r.addr, probe: b.probes[r.probe]})
		}
		sort.Slice(backends[addr], func(i, j int) bool { return backends[addr][i].addr < backends[addr][j].addr })
	}
	for addr, f := range b.fronts {
		if _, ok := backends[addr]; !ok {
			f.ln.Close()
			delete(b.fronts, addr)
		}
	}
	for addr, be := range backends {
		f := b.fronts[addr]
		if f == nil {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				if !b.warned[addr] {
					b.warned[addr] = true
					b.s.log.Error("the emulated load balancer cannot serve a static IP", "addr", addr, "err", err)
				}
				continue
			}
			delete(b.warned, addr)
			f = &front{ln: ln}
			b.fronts[addr] = f
			go b.accept(f)
		}
		f.backends = be
	}
}

func (b *balancer) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for addr, f := range b.fronts {
		f.ln.Close()
		delete(b.fronts, addr)
	}
	for k, p := range b.probes {
		p.cancel()
		delete(b.probes, k)
	}
}

// pick returns the addresses a connection to a front may go to, the next
// one first: the healthy backends, or all of them when none is healthy (as
// GCE does).
func (b *balancer) pick(f *front) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var healthy, all []string
	for _, be := range f.backends {
		all = append(all, be.addr)
		if be.probe == nil || be.probe.isHealthy() {
			healthy = append(healthy, be.addr)
		}
	}
	if len(healthy) == 0 {
		healthy = all
	}
	n := len(healthy)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, healthy[(f.next+i)%n])
	}
	f.next++
	return out
}

func (b *balancer) accept(f *front) {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for _, be := range b.pick(f) {
				up, err := net.DialTimeout("tcp", be, 2*time.Second)
				if err != nil {
					continue
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
				return
			}
		}()
	}
}

// startProbe checks one instance as GCE's legacy HTTP health check does:
// healthy after healthyAfter answers of 200 in a row, unhealthy after
// unhealthy failures (no answer within the timeout, or another status) in
// a row. An instance starts unhealthy.
func (b *balancer) startProbe(w check) *probe {
	ctx, cancel := context.WithCancel(context.Background())
	p := &probe{check: w, cancel: cancel}
	client := &http.Client{Timeout: w.timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		ok, failed := 0, 0
		t := time.NewTicker(w.interval)
		defer t.Stop()
		for {
			if probeOnce(ctx, client, "http://"+w.target+w.path) {
				ok, failed = ok+1, 0
			} else {
				ok, failed = 0, failed+1
			}
			p.mu.Lock()
			if ok >= p.healthyAfter {
				p.healthy = true
			}
			if failed >= p.unhealthy {
				p.healthy = false
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func probeOnce(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *probe) isHealthy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healthy
}

// health reports a pool instance's state for targetPools.getHealth.
func (b *balancer) health(poolKey, instanceKey string) string {
	b.mu.Lock()
	p := b.probes[poolKey+" "+instanceKey]
	b.mu.Unlock()
	if p != nil && p.isHealthy() {
		return "HEALTHY"
	}
	return "UNHEALTHY"
}

// poolGetHealth serves targetPools.getHealth: the state of one instance of
// the pool as its health check last found it.
func (s *Server) poolGetHealth(r *request) (any, error) {
	var ref compute.InstanceReference
	if err := r.decode(&ref); err != nil {
		return nil, err
	}
	key := poolKey(r)
	ik := relPath(r.project, ref.Instance)
	s.mu.Lock()
	p, ok := s.w.TargetPools[key]
	in := s.w.Instances[ik]
	member := ok && contains(p.Instances, link(ik))
	s.mu.Unlock()
	if !ok {
		return nil, errNotFound(key)
	}
	if in == nil || !member {
		return nil, errInvalid("Instance '%s' is not a member of target pool '%s'.", ref.Instance, r.name)
	}
	st := &compute.HealthStatus{Instance: link(ik), HealthState: s.balancer.health(key, ik)}
	if len(in.NetworkInterfaces) > 0 {
		st.IpAddress = in.NetworkInterfaces[0].NetworkIP
	}
	return &compute.TargetPoolInstanceHealth{Kind: "compute#targetPoolInstanceHealth", HealthStatus: []*compute.HealthStatus{st}}, nil
}

// port is where the emulator serves a port of a VM or a static IP.
func (s *Server) port(p int) int {
	if p > 0 && p < 1024 {
		return p + s.portOffset
	}
	return p
}

func atoi(v string) int {
	n, _ := strconv.Atoi(v)
	return n
}

// APIPort is where the emulator serves the API's port 443.
func (s *Server) APIPort() int { return s.port(443) }

// Ports are the body of GET /sim/v1/ports: each port below 1024 that the
// emulator serves elsewhere, e.g. {"443": 10443}; empty when it serves
// them as GCE does.
type Ports map[string]int

func (s *Server) adminPorts(w http.ResponseWriter, _ *http.Request) {
	out := Ports{}
	if s.portOffset != 0 {
		out["443"] = s.port(443)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
