package kubelet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// mapArgs turns a container's arguments on a VM into the ones that do the
// same on this host, where every machine is a loopback IP of one host:
//   - a 0.0.0.0 bind becomes the machine's IP;
//   - a loopback --advertise-address (the emulator's static IPs are
//     loopback addresses, so they can be reached here) is advertised moved
//     into 198.18.0.0/15, a benchmarking range never routed: kube-apiserver
//     refuses to put a loopback address in the kubernetes Service's
//     endpoints, and only in-cluster clients read it;
//   - etcd skips the check of a peer's client address, since every
//     connection here leaves from 127.0.0.1, which no peer certificate names;
//   - kube-apiserver-healthcheck serves and asks the machine's IP, where a
//     VM's serves every interface and asks 127.0.0.1;
//   - with a PortOffset, a port below 1024 (kube-apiserver's 443) moves up
//     by it, and so do the kubeconfigs that name it (a copy beside each).
func (r *Runner) mapArgs(bin string, args []string) ([]string, error) {
	out := make([]string, 0, len(args)+2)
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		switch {
		case ok && strings.HasSuffix(name, "-address") && value == "0.0.0.0":
			a = name + "=" + r.Address
		case ok && name == "--advertise-address" && isLoopback(value):
			b := netip.MustParseAddr(value).As4()
			a = name + "=" + netip.AddrFrom4([4]byte{198, 18, b[2], b[3]}).String()
		case ok && name == "--secure-port":
			a = name + "=" + strconv.Itoa(r.port(atoi(value)))
		case ok && strings.HasSuffix(name, "kubeconfig") && r.PortOffset != 0:
			mapped, err := r.mapKubeconfig(value)
			if err != nil {
				return nil, err
			}
			a = name + "=" + mapped
		}
		out = append(out, a)
	}
	switch bin {
	case "kube-apiserver-healthcheck":
		out = append(out, "--listen-address="+r.Address, "--api-server-address="+r.Address, "--api-server-port="+strconv.Itoa(r.port(443)))
	case "etcd":
		out = append(out, "--peer-skip-client-san-verification=true")
	}
	return out, nil
}

// port is where a VM's port is served here.
func (r *Runner) port(p int) int {
	if p > 0 && p < 1024 {
		return p + r.PortOffset
	}
	return p
}

var serverRe = regexp.MustCompile(`(server: https://[^\s:]+):([0-9]+)`)

// MapKubeconfig is the kubeconfig at path as a process here uses it: a
// copy whose server port is mapped where ports are, else path itself.
func (r *Runner) MapKubeconfig(path string) (string, error) {
	if r.PortOffset == 0 {
		return path, nil
	}
	return r.mapKubeconfig(path)
}

// mapKubeconfig writes a copy of a kubeconfig whose server port is mapped,
// and returns its path.
func (r *Runner) mapKubeconfig(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s to map its port: %w", path, err)
	}
	mapped := serverRe.ReplaceAllStringFunc(string(data), func(m string) string {
		sub := serverRe.FindStringSubmatch(m)
		return sub[1] + ":" + strconv.Itoa(r.port(atoi(sub[2])))
	})
	out := path + ".ports-mapped"
	if err := os.WriteFile(out, []byte(mapped), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	return out, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func isLoopback(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.IsLoopback()
}

// LowPortOffset is how far a port below 1024 moves where this process may
// not bind it: 443 is served on 10443.
const LowPortOffset = 10000

// MayBindLowPorts says whether this process may listen on a port below
// 1024: as root, with CAP_NET_BIND_SERVICE, or where
// net.ipv4.ip_unprivileged_port_start allows it. (Linux checks that
// before whether the port is taken.)
func MayBindLowPorts() bool {
	ln, err := net.Listen("tcp", "127.255.255.254:443")
	if err == nil {
		ln.Close()
	}
	return !errors.Is(err, syscall.EACCES)
}
