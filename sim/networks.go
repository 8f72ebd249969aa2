package sim

import (
	"net/netip"
	"path"
	"strings"

	compute "google.golang.org/api/compute/v1"
)

// Networks and subnetworks. Every project has the auto-mode network
// "default", with a subnetwork "default" in every region on the emulator's
// subnet (--subnet); networks.insert and subnetworks.insert add others:
// auto-mode networks get a subnetwork of their name in every region,
// custom-mode ones only those inserted.
//
// The emulated machines bind their internal IPs on the loopback interface,
// so every subnetwork's range maps onto loopback addresses. A range inside
// 127.0.0.0/8 is used as it is. Any other range (10.20.0.0/24, say) gets a
// loopback block of its own, 127.N.0.0/16 with N counting down from 254,
// whose first addresses stand for the range's: its machines' and internal
// addresses' IPs are those loopback addresses, while ipCidrRange shows the
// range as it was given.

// block is the loopback range a subnetwork's internal IPs come from.
type block struct {
	Loopback string `json:"loopback"`
	Next     uint32 `json:"next"`
	next     *uint32
}

// blockOf is a subnetwork's block; a default subnetwork's is the emulator's
// subnet, shared by every region.
func (w *world) blockOf(subnet string) *block {
	if b, ok := w.Blocks[subnet]; ok {
		b.next = &b.Next
		return b
	}
	return &block{Loopback: w.Subnet, next: &w.NextInternal}
}

func networkKey(project, name string) string {
	return "projects/" + project + "/global/networks/" + name
}

func subnetKey(project, region, name string) string {
	return "projects/" + project + "/regions/" + region + "/subnetworks/" + name
}

// ensureProjectLocked makes the project's default network, as GCE does for
// a new project.
func (s *Server) ensureProjectLocked(project string) {
	if project == "" {
		return
	}
	if _, ok := s.w.Networks[networkKey(project, "default")]; ok {
		return
	}
	// The default network's subnetworks use the emulator's own range.
	_ = s.addNetworkLocked(project, &compute.Network{Name: "default", AutoCreateSubnetworks: true, Description: "Default network for the project"})
}

// addNetworkLocked stores a network and, in auto mode, its subnetworks;
// it fails when no loopback block is free for them (every one held by
// other emulators of this machine).
func (s *Server) addNetworkLocked(project string, n *compute.Network) error {
	key := networkKey(project, n.Name)
	n.Kind, n.Id, n.SelfLink, n.CreationTimestamp = "compute#network", s.w.newID(), link(key), nowStamp()
	n.RoutingConfig = &compute.NetworkRoutingConfig{RoutingMode: "REGIONAL"}
	n.ForceSendFields = []string{"AutoCreateSubnetworks"}
	s.w.Networks[key] = n
	if !n.AutoCreateSubnetworks {
		return nil
	}
	for _, region := range sortedRegions(s.opts.Regions) {
		sk := subnetKey(project, region, n.Name)
		cidr := s.w.Subnet
		if n.Name != "default" {
			var err error
			if cidr, err = s.newBlockLocked(sk, ""); err != nil {
				return err
			}
		}
		sn := &compute.Subnetwork{Name: n.Name, Network: link(key), IpCidrRange: cidr}
		s.storeSubnetLocked(project, region, sn)
		n.Subnetworks = append(n.Subnetworks, link(sk))
	}
	return nil
}

// dropNetworkLocked removes a network whose insert failed, with the
// subnetworks made for it.
func (s *Server) dropNetworkLocked(project, name string) {
	key := networkKey(project, name)
	for k, sn := range s.w.Subnetworks {
		if relPath(project, sn.Network) == key {
			delete(s.w.Subnetworks, k)
			delete(s.w.Blocks, k)
		}
	}
	delete(s.w.Networks, key)
}

// newBlockLocked gives subnetwork key a loopback block for cidr (its own
// range when that is loopback) and returns the block's range.
// A block is claimed against the other emulators of this machine: the
// next /16 counting down from 127.254.0.0/16 that none holds, or the
// range itself when it is loopback (refused when another holds it).
func (s *Server) newBlockLocked(key, cidr string) (string, error) {
	if p, err := netip.ParsePrefix(cidr); err == nil && p.Addr().IsLoopback() {
		if err := s.claims.claim(p); err != nil {
			return "", err
		}
		s.w.Blocks[key] = &block{Loopback: p.Masked().String(), Next: 2}
		return cidr, nil
	}
	first := s.w.NextBlock
	p, err := s.claims.claimFirst(254-first, func(i int) netip.Prefix { return defaultSubnet(254 - first - i) })
	if err != nil {
		return "", err
	}
	s.w.NextBlock = 254 - int(p.Addr().As4()[1]) + 1
	loop := p.String()
	s.w.Blocks[key] = &block{Loopback: loop, Next: 2}
	return loop, nil
}

func (s *Server) storeSubnetLocked(project, region string, sn *compute.Subnetwork) {
	key := subnetKey(project, region, sn.Name)
	sn.Kind, sn.Id, sn.SelfLink, sn.CreationTimestamp = "compute#subnetwork", s.w.newID(), link(key), nowStamp()
	sn.Region = link("projects/" + project + "/regions/" + region)
	p, _ := netip.ParsePrefix(sn.IpCidrRange)
	sn.GatewayAddress = addToIP(p.Masked().Addr(), 1).String()
	sn.StackType, sn.Purpose = "IPV4_ONLY", "PRIVATE"
	s.w.Subnetworks[key] = sn
}

func (s *Server) insertNetwork(r *request) (any, error) {
	return create(s, r, s.w.Networks, func(r *request) string { return networkKey(r.project, r.name) },
		func(n *compute.Network) string { return n.Name }, func(key string, n *compute.Network) (any, error) {
			if n.IPv4Range != "" {
				return nil, errInvalid("Invalid value for field 'resource.IPv4Range': '%s'. Legacy networks are not served by the emulator.", n.IPv4Range)
			}
			if err := s.addNetworkLocked(r.project, n); err != nil {
				s.dropNetworkLocked(r.project, n.Name)
				return nil, errInvalid("The emulator has no loopback range for network %s: %v", n.Name, err)
			}
			return s.newOpLocked(globalScope(r), "networks.insert", key, n.Id, nil), nil
		})
}

func (s *Server) insertSubnetwork(r *request) (any, error) {
	return create(s, r, s.w.Subnetworks, func(r *request) string { return subnetKey(r.project, r.region, r.name) },
		func(sn *compute.Subnetwork) string { return sn.Name }, func(key string, sn *compute.Subnetwork) (any, error) {
			nk := relPath(r.project, sn.Network)
			network, ok := s.w.Networks[nk]
			if sn.Network == "" || !ok {
				return nil, errNotFound(nk)
			}
			p, err := netip.ParsePrefix(sn.IpCidrRange)
			if err != nil || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 29 || p.Masked() != p {
				return nil, errInvalid("Invalid value for field 'resource.ipCidrRange': '%s'. Invalid IPCidrRange: a network's IPv4 range, /8 to /29.", sn.IpCidrRange)
			}
			for k, other := range s.w.Subnetworks {
				q, _ := netip.ParsePrefix(other.IpCidrRange)
				if relPath(r.project, other.Network) == nk && q.Overlaps(p) {
					return nil, errInvalid("Invalid IPCidrRange: %s conflicts with existing subnetwork '%s' in region '%s'.", sn.IpCidrRange, path.Base(k), path.Base(other.Region))
				}
			}
			sn.Network = link(nk)
			if _, err := s.newBlockLocked(key, sn.IpCidrRange); err != nil {
				return nil, errInvalid("The emulator cannot give subnetwork %s its addresses: %v", sn.Name, err)
			}
			s.storeSubnetLocked(r.project, r.region, sn)
			network.Subnetworks = append(network.Subnetworks, link(key))
			return s.newOpLocked(regionScope(r), "subnetworks.insert", key, sn.Id, nil), nil
		})
}

// interfaceSubnetLocked resolves the network and subnetwork of an
// instance's network interface (or of an internal address, network "") in
// region, as GCE does: a network named alone in auto mode means its
// subnetwork in the region; in custom mode a subnetwork is required; a
// subnetwork must be in the region and of the network. It returns their
// keys.
func (s *Server) interfaceSubnetLocked(project, region, network, subnet, field string) (nk, sk string, err *apiError) {
	if subnet != "" {
		sk = relPath(project, subnet)
		if !strings.Contains(subnet, "/") {
			sk = subnetKey(project, region, subnet)
		}
		sn, ok := s.w.Subnetworks[sk]
		if !ok {
			return "", "", errNotFound(sk)
		}
		if path.Base(sn.Region) != region {
			return "", "", errInvalid("Invalid value for field '%s.subnetwork': '%s'. Subnetwork must be in the same region (%s) as the resource.", field, subnet, region)
		}
		nk = relPath(project, sn.Network)
		if network != "" && relPath(project, network) != nk {
			return "", "", errInvalid("Invalid value for field '%s.subnetwork': '%s'. The subnetwork does not belong to network '%s'.", field, subnet, relPath(project, network))
		}
		return nk, sk, nil
	}
	nk = networkKey(project, "default")
	if network != "" {
		nk = relPath(project, network)
	}
	n, ok := s.w.Networks[nk]
	if !ok {
		return "", "", errNotFound(nk)
	}
	if !n.AutoCreateSubnetworks {
		return "", "", errInvalid("Invalid value for field '%s.subnetwork': ''. Subnetwork should be specified for custom subnetmode network", field)
	}
	return nk, subnetKey(project, region, n.Name), nil
}

// inBlock says ip is an address of the subnetwork's loopback block.
func (w *world) inBlock(subnet, ip string) bool {
	a, err := netip.ParseAddr(ip)
	p, perr := netip.ParsePrefix(w.blockOf(subnet).Loopback)
	return err == nil && perr == nil && p.Contains(a)
}
