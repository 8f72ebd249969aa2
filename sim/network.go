package sim

import (
	"net/netip"

	compute "google.golang.org/api/compute/v1"
)

func regionScope(r *request) string { return "projects/" + r.project + "/regions/" + r.region }
func globalScope(r *request) string { return "projects/" + r.project + "/global" }

// --- disks ---

func diskKey(r *request) string { return zoneScope(r) + "/disks/" + r.name }

func (s *Server) insertDisk(r *request) (any, error) {
	var d compute.Disk
	if err := r.decode(&d); err != nil {
		return nil, err
	}
	if err := checkName(d.Name); err != nil {
		return nil, err
	}
	r.name = d.Name
	key := diskKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.Disks[key]; ok {
		return nil, errAlreadyExists(key)
	}
	if d.SizeGb == 0 {
		d.SizeGb = 10
	}
	if d.SizeGb < 0 || d.SizeGb > 65536 {
		return nil, errInvalid("Invalid value for field 'resource.sizeGb': '%d'. Disk size must be between 1 and 65536 GB.", d.SizeGb)
	}
	d.Kind, d.Id, d.SelfLink, d.CreationTimestamp = "compute#disk", s.w.newID(), link(key), nowStamp()
	d.Zone = link(zoneScope(r))
	d.Status = "READY"
	d.Type = link(relPath(r.project, firstNonEmpty(d.Type, "zones/"+r.zone+"/diskTypes/pd-standard")))
	d.LabelFingerprint = fingerprint(d.Labels)
	d.Users = nil
	s.w.Disks[key] = &d
	return s.newOpLocked(zoneScope(r), "disks.insert", key, d.Id, nil), nil
}

func (s *Server) getDisk(r *request) (any, error) { return getRes(s, s.w.Disks, diskKey(r)) }

func (s *Server) listDisks(r *request) (any, error) {
	return listRes(s, r, s.w.Disks, zoneScope(r)+"/disks/", func(items []*compute.Disk, next string) any {
		return &compute.DiskList{Kind: "compute#diskList", Items: items, NextPageToken: next, SelfLink: link(zoneScope(r) + "/disks")}
	})
}

func (s *Server) aggregatedDisks(r *request) (any, error) {
	return aggRes(s, r, s.w.Disks, true, func(g map[string][]*compute.Disk, next string) any {
		items := map[string]compute.DisksScopedList{}
		for scope, l := range g {
			sl := compute.DisksScopedList{Disks: l}
			if len(l) == 0 {
				code, msg := noResults(scope)
				sl.Warning = &compute.DisksScopedListWarning{Code: code, Message: msg}
			}
			items[scope] = sl
		}
		return &compute.DiskAggregatedList{Kind: "compute#diskAggregatedList", Items: items, NextPageToken: next}
	})
}

func (s *Server) deleteDisk(r *request) (any, error) {
	key := diskKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.w.Disks[key]
	if !ok {
		return nil, errNotFound(key)
	}
	if len(d.Users) > 0 {
		return nil, errInUse(key, d.Users[0])
	}
	d.Status = "DELETING"
	return s.newOpLocked(zoneScope(r), "disks.delete", key, d.Id, nil, effect{"disk.delete", key}), nil
}

// --- addresses ---

func addrKey(r *request) string { return regionScope(r) + "/addresses/" + r.name }

func (s *Server) insertAddress(r *request) (any, error) {
	var a compute.Address
	if err := r.decode(&a); err != nil {
		return nil, err
	}
	if err := checkName(a.Name); err != nil {
		return nil, err
	}
	r.name = a.Name
	key := addrKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.Addresses[key]; ok {
		return nil, errAlreadyExists(key)
	}
	a.AddressType = firstNonEmpty(a.AddressType, "EXTERNAL")
	switch a.AddressType {
	case "EXTERNAL":
		if a.Address != "" && s.w.ipInUse(a.Address) {
			return s.newOpLocked(regionScope(r), "addresses.insert", key, 0, opInvalid("IP address %s is already reserved.", a.Address)), nil
		}
		if a.Address == "" {
			a.Address = s.w.allocExternal()
		}
		a.NetworkTier = firstNonEmpty(a.NetworkTier, "PREMIUM")
	case "INTERNAL":
		if a.Address != "" {
			ip, err := netip.ParseAddr(a.Address)
			prefix, _ := netip.ParsePrefix(s.w.Subnet)
			if err != nil || !prefix.Contains(ip) {
				return s.newOpLocked(regionScope(r), "addresses.insert", key, 0,
					opInvalid("Requested internal IP address %s is not within the subnetwork's range %s.", a.Address, s.w.Subnet)), nil
			}
			if s.w.ipInUse(a.Address) {
				return s.newOpLocked(regionScope(r), "addresses.insert", key, 0, opInvalid("IP address %s is already being used by another resource.", a.Address)), nil
			}
		} else {
			ip, err := s.w.allocInternal()
			if err != nil {
				return nil, &apiError{503, "resourceExhausted", err.Error()}
			}
			a.Address = ip
		}
		a.Subnetwork = link(relPath(r.project, firstNonEmpty(a.Subnetwork, "regions/"+r.region+"/subnetworks/default")))
		a.Purpose = firstNonEmpty(a.Purpose, "GCE_ENDPOINT")
	default:
		return nil, errInvalid("Invalid value for field 'resource.addressType': '%s'. Must be EXTERNAL or INTERNAL.", a.AddressType)
	}
	a.Kind, a.Id, a.SelfLink, a.CreationTimestamp = "compute#address", s.w.newID(), link(key), nowStamp()
	a.Region = link(regionScope(r))
	a.Status, a.Users = "RESERVED", nil
	a.LabelFingerprint = fingerprint(a.Labels)
	s.w.Addresses[key] = &a
	return s.newOpLocked(regionScope(r), "addresses.insert", key, a.Id, nil), nil
}

func (s *Server) getAddress(r *request) (any, error) { return getRes(s, s.w.Addresses, addrKey(r)) }

func (s *Server) listAddresses(r *request) (any, error) {
	return listRes(s, r, s.w.Addresses, regionScope(r)+"/addresses/", func(items []*compute.Address, next string) any {
		return &compute.AddressList{Kind: "compute#addressList", Items: items, NextPageToken: next, SelfLink: link(regionScope(r) + "/addresses")}
	})
}

func (s *Server) aggregatedAddresses(r *request) (any, error) {
	return aggRes(s, r, s.w.Addresses, false, func(g map[string][]*compute.Address, next string) any {
		items := map[string]compute.AddressesScopedList{}
		for scope, l := range g {
			sl := compute.AddressesScopedList{Addresses: l}
			if len(l) == 0 {
				code, msg := noResults(scope)
				sl.Warning = &compute.AddressesScopedListWarning{Code: code, Message: msg}
			}
			items[scope] = sl
		}
		return &compute.AddressAggregatedList{Kind: "compute#addressAggregatedList", Items: items, NextPageToken: next}
	})
}

func (s *Server) deleteAddress(r *request) (any, error) {
	key := addrKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.w.Addresses[key]
	if !ok {
		return nil, errNotFound(key)
	}
	if a.Status == "IN_USE" && len(a.Users) > 0 {
		return nil, errInUse(key, a.Users[0])
	}
	return s.newOpLocked(regionScope(r), "addresses.delete", key, a.Id, nil, effect{"address.delete", key}), nil
}

// --- targetPools ---

func poolKey(r *request) string { return regionScope(r) + "/targetPools/" + r.name }

func (s *Server) insertTargetPool(r *request) (any, error) {
	var p compute.TargetPool
	if err := r.decode(&p); err != nil {
		return nil, err
	}
	if err := checkName(p.Name); err != nil {
		return nil, err
	}
	r.name = p.Name
	key := poolKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.TargetPools[key]; ok {
		return nil, errAlreadyExists(key)
	}
	for i, h := range p.HealthChecks {
		hk := relPath(r.project, h)
		if _, ok := s.w.HealthChecks[hk]; !ok {
			return s.newOpLocked(regionScope(r), "targetPools.insert", key, 0, opNotFound(hk)), nil
		}
		p.HealthChecks[i] = link(hk)
	}
	for i, in := range p.Instances {
		ik := relPath(r.project, in)
		if _, ok := s.w.Instances[ik]; !ok {
			return s.newOpLocked(regionScope(r), "targetPools.insert", key, 0, opNotFound(ik)), nil
		}
		p.Instances[i] = link(ik)
	}
	p.Kind, p.Id, p.SelfLink, p.CreationTimestamp = "compute#targetPool", s.w.newID(), link(key), nowStamp()
	p.Region = link(regionScope(r))
	p.SessionAffinity = firstNonEmpty(p.SessionAffinity, "NONE")
	s.w.TargetPools[key] = &p
	return s.newOpLocked(regionScope(r), "targetPools.insert", key, p.Id, nil), nil
}

func (s *Server) getTargetPool(r *request) (any, error) {
	return getRes(s, s.w.TargetPools, poolKey(r))
}

func (s *Server) listTargetPools(r *request) (any, error) {
	return listRes(s, r, s.w.TargetPools, regionScope(r)+"/targetPools/", func(items []*compute.TargetPool, next string) any {
		return &compute.TargetPoolList{Kind: "compute#targetPoolList", Items: items, NextPageToken: next}
	})
}

func (s *Server) deleteTargetPool(r *request) (any, error) {
	key := poolKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.w.TargetPools[key]
	if !ok {
		return nil, errNotFound(key)
	}
	for fk, f := range s.w.ForwardingRules {
		if relPath(r.project, f.Target) == key {
			return nil, errInUse(key, link(fk))
		}
	}
	return s.newOpLocked(regionScope(r), "targetPools.delete", key, p.Id, nil, effect{"targetPool.delete", key}), nil
}

func (s *Server) poolAddInstance(r *request) (any, error) {
	var req compute.TargetPoolsAddInstanceRequest
	if err := r.decode(&req); err != nil {
		return nil, err
	}
	key := poolKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.w.TargetPools[key]
	if !ok {
		return nil, errNotFound(key)
	}
	for _, ref := range req.Instances {
		ik := relPath(r.project, ref.Instance)
		if _, ok := s.w.Instances[ik]; !ok {
			return s.newOpLocked(regionScope(r), "targetPools.addInstance", key, p.Id, opNotFound(ik)), nil
		}
	}
	for _, ref := range req.Instances {
		l := link(relPath(r.project, ref.Instance))
		if !contains(p.Instances, l) {
			p.Instances = append(p.Instances, l)
		}
	}
	return s.newOpLocked(regionScope(r), "targetPools.addInstance", key, p.Id, nil), nil
}

func (s *Server) poolRemoveInstance(r *request) (any, error) {
	var req compute.TargetPoolsRemoveInstanceRequest
	if err := r.decode(&req); err != nil {
		return nil, err
	}
	key := poolKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.w.TargetPools[key]
	if !ok {
		return nil, errNotFound(key)
	}
	for _, ref := range req.Instances {
		l := link(relPath(r.project, ref.Instance))
		var kept []string
		for _, in := range p.Instances {
			if in != l {
				kept = append(kept, in)
			}
		}
		p.Instances = kept
	}
	return s.newOpLocked(regionScope(r), "targetPools.removeInstance", key, p.Id, nil), nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// --- forwardingRules ---

func ruleKey(r *request) string { return regionScope(r) + "/forwardingRules/" + r.name }

func (s *Server) insertForwardingRule(r *request) (any, error) {
	var f compute.ForwardingRule
	if err := r.decode(&f); err != nil {
		return nil, err
	}
	if err := checkName(f.Name); err != nil {
		return nil, err
	}
	r.name = f.Name
	key := ruleKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.ForwardingRules[key]; ok {
		return nil, errAlreadyExists(key)
	}
	fail := func(oe *opError) (any, error) {
		return s.newOpLocked(regionScope(r), "forwardingRules.insert", key, 0, oe), nil
	}
	if f.Target != "" {
		tk := relPath(r.project, f.Target)
		if _, ok := s.w.TargetPools[tk]; !ok {
			return fail(opNotFound(tk))
		}
		f.Target = link(tk)
	}
	var addr *compute.Address
	if f.IPAddress != "" {
		if _, err := netip.ParseAddr(f.IPAddress); err != nil {
			ak := relPath(r.project, f.IPAddress)
			a, ok := s.w.Addresses[ak]
			if !ok {
				return fail(opNotFound(ak))
			}
			f.IPAddress, addr = a.Address, a
		} else {
			_, addr = s.w.addressByIP(r.project, r.region, f.IPAddress)
			if addr == nil {
				return fail(opInvalid("Specified IP address '%s' is not reserved in region %s.", f.IPAddress, r.region))
			}
		}
		if addr.Status == "IN_USE" {
			return fail(opInUse(relPath(r.project, addr.SelfLink), addr.Users[0]))
		}
		addr.Status, addr.Users = "IN_USE", []string{link(key)}
	} else {
		f.IPAddress = s.w.allocExternal()
	}
	f.Kind, f.Id, f.SelfLink, f.CreationTimestamp = "compute#forwardingRule", s.w.newID(), link(key), nowStamp()
	f.Region = link(regionScope(r))
	f.IPProtocol = firstNonEmpty(f.IPProtocol, "TCP")
	f.LoadBalancingScheme = firstNonEmpty(f.LoadBalancingScheme, "EXTERNAL")
	f.NetworkTier = firstNonEmpty(f.NetworkTier, "PREMIUM")
	f.LabelFingerprint = fingerprint(f.Labels)
	s.w.ForwardingRules[key] = &f
	return s.newOpLocked(regionScope(r), "forwardingRules.insert", key, f.Id, nil), nil
}

func (s *Server) getForwardingRule(r *request) (any, error) {
	return getRes(s, s.w.ForwardingRules, ruleKey(r))
}

func (s *Server) listForwardingRules(r *request) (any, error) {
	return listRes(s, r, s.w.ForwardingRules, regionScope(r)+"/forwardingRules/", func(items []*compute.ForwardingRule, next string) any {
		return &compute.ForwardingRuleList{Kind: "compute#forwardingRuleList", Items: items, NextPageToken: next}
	})
}

func (s *Server) aggregatedForwardingRules(r *request) (any, error) {
	return aggRes(s, r, s.w.ForwardingRules, false, func(g map[string][]*compute.ForwardingRule, next string) any {
		items := map[string]compute.ForwardingRulesScopedList{}
		for scope, l := range g {
			sl := compute.ForwardingRulesScopedList{ForwardingRules: l}
			if len(l) == 0 {
				code, msg := noResults(scope)
				sl.Warning = &compute.ForwardingRulesScopedListWarning{Code: code, Message: msg}
			}
			items[scope] = sl
		}
		return &compute.ForwardingRuleAggregatedList{Kind: "compute#forwardingRuleAggregatedList", Items: items, NextPageToken: next}
	})
}

func (s *Server) deleteForwardingRule(r *request) (any, error) {
	key := ruleKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.w.ForwardingRules[key]
	if !ok {
		return nil, errNotFound(key)
	}
	return s.newOpLocked(regionScope(r), "forwardingRules.delete", key, f.Id, nil, effect{"forwardingRule.delete", key}), nil
}

// --- firewalls ---

func fwKey(r *request) string { return globalScope(r) + "/firewalls/" + r.name }

func (s *Server) insertFirewall(r *request) (any, error) {
	var f compute.Firewall
	if err := r.decode(&f); err != nil {
		return nil, err
	}
	if err := checkName(f.Name); err != nil {
		return nil, err
	}
	r.name = f.Name
	key := fwKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.Firewalls[key]; ok {
		return nil, errAlreadyExists(key)
	}
	if oe := s.normalizeFirewall(r, &f); oe != nil {
		return s.newOpLocked(globalScope(r), "firewalls.insert", key, 0, oe), nil
	}
	f.Kind, f.Id, f.SelfLink, f.CreationTimestamp = "compute#firewall", s.w.newID(), link(key), nowStamp()
	s.w.Firewalls[key] = &f
	return s.newOpLocked(globalScope(r), "firewalls.insert", key, f.Id, nil), nil
}

func (s *Server) normalizeFirewall(r *request, f *compute.Firewall) *opError {
	nk := relPath(r.project, firstNonEmpty(f.Network, "global/networks/default"))
	if nk != "projects/"+r.project+"/global/networks/default" {
		return opNotFound(nk)
	}
	f.Network = link(nk)
	f.Direction = firstNonEmpty(f.Direction, "INGRESS")
	if f.Priority == 0 {
		f.Priority = 1000
	}
	return nil
}

func (s *Server) getFirewall(r *request) (any, error) { return getRes(s, s.w.Firewalls, fwKey(r)) }

func (s *Server) listFirewalls(r *request) (any, error) {
	return listRes(s, r, s.w.Firewalls, globalScope(r)+"/firewalls/", func(items []*compute.Firewall, next string) any {
		return &compute.FirewallList{Kind: "compute#firewallList", Items: items, NextPageToken: next, SelfLink: link(globalScope(r) + "/firewalls")}
	})
}

// patchFirewall applies a JSON merge patch, as firewalls.patch does.
func (s *Server) patchFirewall(r *request) (any, error) {
	var patch map[string]any
	if err := r.decode(&patch); err != nil {
		return nil, err
	}
	key := fwKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.w.Firewalls[key]
	if !ok {
		return nil, errNotFound(key)
	}
	cur := map[string]any{}
	if err := remarshal(f, &cur); err != nil {
		return nil, err
	}
	for k, v := range patch {
		switch k {
		case "name", "id", "selfLink", "kind", "creationTimestamp":
			continue
		}
		if v == nil {
			delete(cur, k)
		} else {
			cur[k] = v
		}
	}
	var nf compute.Firewall
	if err := remarshal(cur, &nf); err != nil {
		return nil, errInvalid("Invalid firewall patch: %v", err)
	}
	if oe := s.normalizeFirewall(r, &nf); oe != nil {
		return s.newOpLocked(globalScope(r), "firewalls.patch", key, f.Id, oe), nil
	}
	s.w.Firewalls[key] = &nf
	return s.newOpLocked(globalScope(r), "firewalls.patch", key, nf.Id, nil), nil
}

func (s *Server) deleteFirewall(r *request) (any, error) {
	key := fwKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.w.Firewalls[key]
	if !ok {
		return nil, errNotFound(key)
	}
	return s.newOpLocked(globalScope(r), "firewalls.delete", key, f.Id, nil, effect{"firewall.delete", key}), nil
}

// --- zones, regions, networks ---

func (s *Server) zoneResource(project, zone string) *compute.Zone {
	region := s.regionOfZone(zone)
	return &compute.Zone{Kind: "compute#zone", Name: zone, Status: "UP", Id: uint64(len(zone)),
		Region: link("projects/" + project + "/regions/" + region), SelfLink: link("projects/" + project + "/zones/" + zone),
		Description: zone, AvailableCpuPlatforms: []string{"Intel Broadwell"}}
}

func (s *Server) getZone(r *request) (any, error) { return s.zoneResource(r.project, r.zone), nil }

func (s *Server) listZones(r *request) (any, error) {
	var zones []*compute.Zone
	for _, region := range sortedRegions(s.opts.Regions) {
		for _, z := range s.opts.Regions[region] {
			zones = append(zones, s.zoneResource(r.project, z))
		}
	}
	page, next, err := paginate(r, zones, func(z *compute.Zone) any { return z })
	if err != nil {
		return nil, err
	}
	return &compute.ZoneList{Kind: "compute#zoneList", Items: page, NextPageToken: next}, nil
}

func (s *Server) regionResource(project, region string) *compute.Region {
	var zones []string
	for _, z := range s.opts.Regions[region] {
		zones = append(zones, link("projects/"+project+"/zones/"+z))
	}
	return &compute.Region{Kind: "compute#region", Name: region, Status: "UP", Zones: zones, Description: region,
		SelfLink: link("projects/" + project + "/regions/" + region)}
}

func (s *Server) getRegion(r *request) (any, error) {
	return s.regionResource(r.project, r.region), nil
}

func (s *Server) listRegions(r *request) (any, error) {
	var regions []*compute.Region
	for _, region := range sortedRegions(s.opts.Regions) {
		regions = append(regions, s.regionResource(r.project, region))
	}
	page, next, err := paginate(r, regions, func(x *compute.Region) any { return x })
	if err != nil {
		return nil, err
	}
	return &compute.RegionList{Kind: "compute#regionList", Items: page, NextPageToken: next}, nil
}

func (s *Server) defaultNetwork(project string) *compute.Network {
	return &compute.Network{Kind: "compute#network", Name: "default", Id: 1, AutoCreateSubnetworks: true,
		RoutingConfig: &compute.NetworkRoutingConfig{RoutingMode: "REGIONAL"},
		SelfLink:      link("projects/" + project + "/global/networks/default")}
}

func (s *Server) getNetwork(r *request) (any, error) {
	if r.PathValue("network") != "default" {
		return nil, errNotFound(globalScope(r) + "/networks/" + r.PathValue("network"))
	}
	return s.defaultNetwork(r.project), nil
}

func (s *Server) listNetworks(r *request) (any, error) {
	page, next, err := paginate(r, []*compute.Network{s.defaultNetwork(r.project)}, func(n *compute.Network) any { return n })
	if err != nil {
		return nil, err
	}
	return &compute.NetworkList{Kind: "compute#networkList", Items: page, NextPageToken: next}, nil
}
