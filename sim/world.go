package sim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeha/kubeha/internal/atomicfile"

	compute "google.golang.org/api/compute/v1"
	iam "google.golang.org/api/iam/v1"
)

// canonicalBase prefixes every selfLink the emulator stores; responses
// rewrite it to the server's own base URL, so links stay valid when a
// persisted emulator restarts on another port.
const canonicalBase = "https://www.googleapis.com/compute/v1/"

// world is the emulated project state, persisted as JSON. Every map is keyed
// by the resource's relative path ("projects/P/zones/Z/instances/N").
type world struct {
	Instances       map[string]*compute.Instance        `json:"instances"`
	Disks           map[string]*compute.Disk            `json:"disks"`
	Addresses       map[string]*compute.Address         `json:"addresses"`
	TargetPools     map[string]*compute.TargetPool      `json:"targetPools"`
	ForwardingRules map[string]*compute.ForwardingRule  `json:"forwardingRules"`
	HealthChecks    map[string]*compute.HttpHealthCheck `json:"httpHealthChecks"`
	Firewalls       map[string]*compute.Firewall        `json:"firewalls"`
	Networks        map[string]*compute.Network         `json:"networks,omitempty"`
	Subnetworks     map[string]*compute.Subnetwork      `json:"subnetworks,omitempty"`
	ServiceAccounts map[string]*iam.ServiceAccount      `json:"serviceAccounts,omitempty"`
	// Secrets hold private keys: state.json is written 0600.
	Secrets map[string]*secret `json:"secrets,omitempty"`
	// Buckets are Cloud Storage buckets by name (global, as GCS's are);
	// their objects' bytes are files under the emulator's directory.
	Buckets map[string]*bucket `json:"buckets,omitempty"`
	// Blocks maps a subnetwork to the loopback block its internal IPs come
	// from (see networks.go); the default subnetworks use Subnet.
	Blocks     map[string]*block     `json:"blocks,omitempty"`
	NextBlock  int                   `json:"nextBlock,omitempty"`
	Operations map[string]*operation `json:"operations"`
	// Crashed holds instances whose etcd member was crashed through the
	// admin API: the VM stays RUNNING but its member does not run.
	Crashed map[string]bool `json:"crashed"`
	// RequestIDs maps "project/requestId" to the operation it started.
	RequestIDs map[string]string `json:"requestIds,omitempty"`

	NextID       uint64 `json:"nextID"`
	NextInternal uint32 `json:"nextInternal"` // offset of the next internal IP in the subnet
	NextExternal uint32 `json:"nextExternal"`
	Subnet       string `json:"subnet"` // the internal range, e.g. 127.0.0.0/16
}

// operation is a compute operation plus what finishing it does.
type operation struct {
	Op      *compute.Operation `json:"op"`
	DoneAt  time.Time          `json:"doneAt"`
	Started time.Time          `json:"started"`
	Finish  []effect           `json:"finish,omitempty"` // applied when the operation reaches DONE
}

// effect is a state change applied when an operation finishes.
type effect struct {
	Kind string `json:"kind"` // see (*Server).apply
	Key  string `json:"key"`
}

func newWorld(subnet string) *world {
	return &world{
		Instances:       map[string]*compute.Instance{},
		Disks:           map[string]*compute.Disk{},
		Addresses:       map[string]*compute.Address{},
		TargetPools:     map[string]*compute.TargetPool{},
		ForwardingRules: map[string]*compute.ForwardingRule{},
		HealthChecks:    map[string]*compute.HttpHealthCheck{},
		Firewalls:       map[string]*compute.Firewall{},
		Networks:        map[string]*compute.Network{},
		Subnetworks:     map[string]*compute.Subnetwork{},
		ServiceAccounts: map[string]*iam.ServiceAccount{},
		Secrets:         map[string]*secret{},
		Buckets:         map[string]*bucket{},
		Blocks:          map[string]*block{},
		Operations:      map[string]*operation{},
		Crashed:         map[string]bool{},
		RequestIDs:      map[string]string{},
		NextID:          4000000000000000000,
		NextInternal:    2,
		NextExternal:    10,
		Subnet:          subnet,
	}
}

func (w *world) newID() uint64 {
	w.NextID++
	return w.NextID
}

// allocInternal returns the next free internal IP of a subnetwork (its
// key), from its loopback block: free in the emulator's world, and no
// process of this machine listening on it.
func (w *world) allocInternal(subnet string) (string, error) {
	b := w.blockOf(subnet)
	prefix, err := netip.ParsePrefix(b.Loopback)
	if err != nil {
		return "", fmt.Errorf("bad subnet %q: %w", b.Loopback, err)
	}
	for tries := 0; tries < 1<<16; tries++ {
		ip := addToIP(prefix.Addr(), *b.next)
		*b.next++
		if !prefix.Contains(ip) {
			return "", fmt.Errorf("subnet %s is exhausted", b.Loopback)
		}
		if !w.ipInUse(ip.String()) && listenerOn(ip.String()) == "" {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("subnet %s is exhausted", b.Loopback)
}

// allocExternal returns a free external IP. External addresses are
// loopback addresses of this machine, so that the emulated static IP can be
// reached here: the top of the emulator's subnet, counting down (internal
// IPs count up from its bottom). A subnet that is not loopback gets
// addresses of the documentation range 203.0.113.0/24, which nothing serves.
func (w *world) allocExternal() string {
	prefix, err := netip.ParsePrefix(w.Subnet)
	if err != nil || !prefix.Addr().IsLoopback() {
		n := w.NextExternal
		w.NextExternal++
		return addToIP(netip.MustParseAddr("203.0.113.0"), n%254+1).String()
	}
	size := uint32(1) << (32 - prefix.Bits())
	for n := uint32(2); n < size/2; n++ {
		ip := addToIP(prefix.Masked().Addr(), size-n).String()
		if !w.ipInUse(ip) && listenerOn(ip) == "" {
			return ip
		}
	}
	return addToIP(netip.MustParseAddr("203.0.113.0"), w.NextExternal%254+1).String()
}

func addToIP(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:]) + n
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func (w *world) ipInUse(ip string) bool {
	for _, a := range w.Addresses {
		if a.Address == ip {
			return true
		}
	}
	for _, in := range w.Instances {
		for _, ni := range in.NetworkInterfaces {
			if ni.NetworkIP == ip {
				return true
			}
			for _, ac := range ni.AccessConfigs {
				if ac.NatIP == ip {
					return true
				}
			}
		}
	}
	return false
}

// addressByIP finds the reserved address with this IP in a region.
func (w *world) addressByIP(project, region, ip string) (string, *compute.Address) {
	for k, a := range w.Addresses {
		if a.Address == ip && strings.HasPrefix(k, "projects/"+project+"/regions/"+region+"/") {
			return k, a
		}
	}
	return "", nil
}

// save writes the world to dir/state.json atomically.
func (w *world) save(dir string) error {
	if dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(w, "", " ")
	if err != nil {
		return fmt.Errorf("encode emulator state: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, "state.json"), data, 0o600)
}

func loadWorld(dir string) (*world, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	w := newWorld("")
	if err := json.Unmarshal(data, w); err != nil {
		return nil, fmt.Errorf("read emulator state %s: %w", filepath.Join(dir, "state.json"), err)
	}
	return w, nil
}

// fingerprint is a content hash in the form GCE uses for fingerprints.
func fingerprint(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:8])
}

// sameFingerprint compares fingerprints as GCE does: as bytes. They are
// base64, and gcloud sends back the URL-safe form of the standard one
// GCE (and the emulator) gave it.
func sameFingerprint(a, b string) bool {
	norm := func(s string) string {
		return strings.TrimRight(strings.NewReplacer("-", "+", "_", "/").Replace(s), "=")
	}
	return norm(a) == norm(b)
}

// link is the canonical selfLink of a relative path.
func link(rel string) string { return canonicalBase + rel }

// relPath turns a full or partial resource URL into the relative path
// "projects/P/...". Partial forms without a project ("zones/Z/disks/D",
// "global/networks/N") get the request's project.
func relPath(project, ref string) string {
	if i := strings.Index(ref, "projects/"); i >= 0 {
		return ref[i:]
	}
	return "projects/" + project + "/" + strings.TrimPrefix(ref, "/")
}

// lastSegment is the name at the end of a path or URL.

// kindOfPath is the singular resource kind of a relative path, for messages.
func kindOfPath(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) < 2 {
		return "resource"
	}
	k := parts[len(parts)-2]
	switch k {
	case "addresses":
		return "address"
	case "httpHealthChecks":
		return "httpHealthCheck"
	}
	return strings.TrimSuffix(k, "s")
}

func nowStamp() string { return time.Now().Format("2006-01-02T15:04:05.000-07:00") }
