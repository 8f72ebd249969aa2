package sim

import (
	"cmp"
	"net/http"
	"path"

	compute "google.golang.org/api/compute/v1"
)

func instKey(r *request) string {
	return "projects/" + r.project + "/zones/" + r.zone + "/instances/" + r.name
}

func zoneScope(r *request) string { return "projects/" + r.project + "/zones/" + r.zone }

func (s *Server) insertInstance(r *request) (any, error) {
	var in compute.Instance
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	if err := checkName(in.Name); err != nil {
		return nil, err
	}
	r.name = in.Name
	key := instKey(r)
	region := s.regionOfZone(r.zone)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.Instances[key]; ok {
		return nil, errAlreadyExists(key)
	}
	if in.MachineType == "" {
		return nil, errInvalid("Invalid value for field 'resource.machineType': ''. Machine type must be specified.")
	}
	// Everything GCE checks after accepting the request is checked here
	// first: a problem finishes the operation with an error and changes nothing.
	oe := s.checkInstanceRefsLocked(r, key, region, &in)
	if oe != nil {
		return s.newOpLocked(zoneScope(r), "instances.insert", key, 0, oe), nil
	}
	in.Kind = "compute#instance"
	in.Id = s.w.newID()
	in.CreationTimestamp = nowStamp()
	in.SelfLink = link(key)
	in.Zone = link(zoneScope(r))
	in.Status = "PROVISIONING"
	in.MachineType = link(relPath(r.project, machineTypeRef(r.zone, in.MachineType)))
	if in.Metadata == nil {
		in.Metadata = &compute.Metadata{}
	}
	in.Metadata.Kind = "compute#metadata"
	in.Metadata.Fingerprint = fingerprint(in.Metadata.Items)
	in.LabelFingerprint = fingerprint(in.Labels)
	if in.Tags != nil {
		in.Tags.Fingerprint = fingerprint(in.Tags.Items)
	}
	for _, sa := range in.ServiceAccounts {
		if sa.Email == "default" {
			sa.Email = DefaultServiceAccount
		}
	}
	// Network: one interface on the named network, with its internal IP.
	if len(in.NetworkInterfaces) == 0 {
		in.NetworkInterfaces = []*compute.NetworkInterface{{}}
	}
	ni := in.NetworkInterfaces[0]
	ni.Kind = "compute#networkInterface"
	ni.Name = "nic0"
	nk, sk, _ := s.interfaceSubnetLocked(r.project, region, ni.Network, ni.Subnetwork, "resource.networkInterfaces[0]")
	ni.Network, ni.Subnetwork = link(nk), link(sk)
	if ni.NetworkIP == "" {
		ip, err := s.w.allocInternal(sk)
		if err != nil {
			return nil, &apiError{503, "resourceExhausted", err.Error()}
		}
		ni.NetworkIP = ip
	} else if _, a := s.w.addressByIP(r.project, region, ni.NetworkIP); a != nil {
		a.Status, a.Users = "IN_USE", []string{link(key)}
	}
	for _, ac := range ni.AccessConfigs {
		s.attachAccessConfigLocked(r.project, region, key, ac)
	}
	// Disks: the boot disk is created; others are attached.
	for i, d := range in.Disks {
		d.Kind = "compute#attachedDisk"
		d.Index = int64(i)
		d.Type = cmp.Or(d.Type, "PERSISTENT")
		d.Mode = cmp.Or(d.Mode, "READ_WRITE")
		if d.Boot && d.InitializeParams != nil && d.Source == "" {
			name := cmp.Or(d.InitializeParams.DiskName, in.Name)
			dk := "projects/" + r.project + "/zones/" + r.zone + "/disks/" + name
			size := d.InitializeParams.DiskSizeGb
			if size == 0 {
				size = 10
			}
			s.w.Disks[dk] = &compute.Disk{Kind: "compute#disk", Id: s.w.newID(), Name: name, Zone: link(zoneScope(r)),
				SizeGb: size, Status: "READY", SelfLink: link(dk), CreationTimestamp: nowStamp(),
				SourceImage: d.InitializeParams.SourceImage, Type: link(zoneScope(r) + "/diskTypes/pd-standard"),
				Users: []string{link(key)}, LabelFingerprint: fingerprint(nil)}
			d.Source = link(dk)
			d.DeviceName = cmp.Or(d.DeviceName, "persistent-disk-0")
			d.InitializeParams = nil
			continue
		}
		dk := relPath(r.project, d.Source)
		d.Source = link(dk)
		d.DeviceName = cmp.Or(d.DeviceName, path.Base(dk))
		disk := s.w.Disks[dk]
		disk.Users = append(disk.Users, link(key))
	}
	s.w.Instances[key] = &in
	return s.newOpLocked(zoneScope(r), "instances.insert", key, in.Id, nil, effect{"instance.running", key}), nil
}

func machineTypeRef(zone, mt string) string {
	if len(mt) > 0 && !containsSlash(mt) {
		return "zones/" + zone + "/machineTypes/" + mt
	}
	return mt
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// checkInstanceRefsLocked checks the disks, network, IPs and access configs
// an instance refers to, as GCE does after accepting an insert.
func (s *Server) checkInstanceRefsLocked(r *request, key, region string, in *compute.Instance) *opError {
	for _, d := range in.Disks {
		if d.Boot && d.InitializeParams != nil && d.Source == "" {
			name := cmp.Or(d.InitializeParams.DiskName, in.Name)
			dk := "projects/" + r.project + "/zones/" + r.zone + "/disks/" + name
			if _, ok := s.w.Disks[dk]; ok {
				return &opError{"RESOURCE_ALREADY_EXISTS", "The resource '" + dk + "' already exists", 409}
			}
			continue
		}
		if d.Source == "" {
			return opInvalid("Invalid value for field 'resource.disks[].source': ''. A disk needs a source or initializeParams.")
		}
		dk := relPath(r.project, d.Source)
		disk, ok := s.w.Disks[dk]
		if !ok {
			return opNotFound(dk)
		}
		if scopeOf(dk) != "zones/"+r.zone {
			return opInvalid("Disk '%s' must be in zone %s", dk, r.zone)
		}
		if len(disk.Users) > 0 && (d.Mode == "" || d.Mode == "READ_WRITE") {
			return opInUse(dk, disk.Users[0])
		}
		if disk.Status != "READY" {
			return opNotReady(dk)
		}
	}
	for _, sa := range in.ServiceAccounts {
		if !s.w.serviceAccountExists(r.project, sa.Email) {
			return opNotFound(serviceAccountKey(r.project, sa.Email))
		}
	}
	for _, ni := range in.NetworkInterfaces {
		_, sk, err := s.interfaceSubnetLocked(r.project, region, ni.Network, ni.Subnetwork, "resource.networkInterfaces[0]")
		if err != nil {
			if err.Code == http.StatusNotFound {
				return &opError{"RESOURCE_NOT_FOUND", err.Message, http.StatusNotFound}
			}
			return opInvalid("%s", err.Message)
		}
		if ni.NetworkIP != "" {
			if !s.w.inBlock(sk, ni.NetworkIP) {
				return opInvalid("Requested internal IP address %s is not within the subnetwork's range %s.", ni.NetworkIP, s.w.blockOf(sk).Loopback)
			}
			if ak, a := s.w.addressByIP(r.project, region, ni.NetworkIP); a != nil {
				if a.Status == "IN_USE" {
					return opInUse(ak, a.Users[0])
				}
			} else if s.w.ipInUse(ni.NetworkIP) {
				return opInvalid("IP address %s is already being used by another resource.", ni.NetworkIP)
			}
		}
		if len(ni.AccessConfigs) > 1 {
			return opInvalid("At most one access config currently supported.")
		}
		for _, ac := range ni.AccessConfigs {
			if oe := s.checkNatIPLocked(r.project, region, ac.NatIP); oe != nil {
				return oe
			}
		}
	}
	return nil
}

// checkNatIPLocked checks that an external IP asked for is a static address
// of the region that is not in use.
func (s *Server) checkNatIPLocked(project, region, natIP string) *opError {
	if natIP == "" {
		return nil
	}
	ak, a := s.w.addressByIP(project, region, natIP)
	if a == nil || a.AddressType == "INTERNAL" {
		return opInvalid("Specified IP address '%s' is not reserved in region %s.", natIP, region)
	}
	if a.Status == "IN_USE" {
		return opInUse(ak, a.Users[0])
	}
	return nil
}

func (s *Server) attachAccessConfigLocked(project, region, instKey string, ac *compute.AccessConfig) {
	ac.Kind = "compute#accessConfig"
	ac.Type = cmp.Or(ac.Type, "ONE_TO_ONE_NAT")
	ac.Name = cmp.Or(ac.Name, "external-nat")
	ac.NetworkTier = cmp.Or(ac.NetworkTier, "PREMIUM")
	if ac.NatIP == "" {
		ac.NatIP = s.w.allocExternal()
		return
	}
	if _, a := s.w.addressByIP(project, region, ac.NatIP); a != nil {
		a.Status, a.Users = "IN_USE", []string{link(instKey)}
	}
}

// releaseIPLocked frees the static address with this IP, if any.
func (s *Server) releaseIPLocked(project, region, ip string) {
	if _, a := s.w.addressByIP(project, region, ip); a != nil {
		a.Status, a.Users = "RESERVED", nil
	}
}

// instanceLocked is the instance at key, or GCE's 404.
func (s *Server) instanceLocked(key string) (*compute.Instance, error) {
	in, ok := s.w.Instances[key]
	if !ok {
		return nil, errNotFound(key)
	}
	return in, nil
}

func (s *Server) deleteInstance(r *request) (any, error) {
	key := instKey(r)
	return locked(s, s.w.Instances, key, func(in *compute.Instance) (any, error) {
		in.Status = "STOPPING"
		s.shutDownLocked(key)
		return s.newOpLocked(zoneScope(r), "instances.delete", key, in.Id, nil, effect{"instance.delete", key}), nil
	})
}

func (s *Server) stopInstance(r *request) (any, error) {
	key := instKey(r)
	return locked(s, s.w.Instances, key, func(in *compute.Instance) (any, error) {
		if in.Status == "TERMINATED" {
			return s.newOpLocked(zoneScope(r), "instances.stop", key, in.Id, nil), nil
		}
		in.Status = "STOPPING"
		s.shutDownLocked(key)
		return s.newOpLocked(zoneScope(r), "instances.stop", key, in.Id, nil, effect{"instance.stop", key}), nil
	})
}

func (s *Server) startInstance(r *request) (any, error) {
	key := instKey(r)
	region := s.regionOfZone(r.zone)
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.instanceLocked(key)
	if err != nil {
		return nil, err
	}
	if in.Status != "TERMINATED" {
		return s.newOpLocked(zoneScope(r), "instances.start", key, in.Id, nil), nil
	}
	in.Status = "STAGING"
	for _, ni := range in.NetworkInterfaces {
		for _, ac := range ni.AccessConfigs {
			s.attachAccessConfigLocked(r.project, region, key, ac)
		}
	}
	return s.newOpLocked(zoneScope(r), "instances.start", key, in.Id, nil, effect{"instance.running", key}), nil
}

func (s *Server) setMetadata(r *request) (any, error) {
	key := instKey(r)
	return update(s, r, s.w.Instances, key, func(md *compute.Metadata, in *compute.Instance) (any, error) {
		if !sameFingerprint(md.Fingerprint, in.Metadata.Fingerprint) {
			return nil, errFingerprint("metadata")
		}
		in.Metadata = &compute.Metadata{Kind: "compute#metadata", Items: md.Items, Fingerprint: fingerprint(md.Items)}
		return s.newOpLocked(zoneScope(r), "instances.setMetadata", key, in.Id, nil), nil
	})
}

func (s *Server) setLabels(r *request) (any, error) {
	key := instKey(r)
	return update(s, r, s.w.Instances, key, func(req *compute.InstancesSetLabelsRequest, in *compute.Instance) (any, error) {
		if !sameFingerprint(req.LabelFingerprint, in.LabelFingerprint) {
			return nil, errFingerprint("label")
		}
		in.Labels = req.Labels
		in.LabelFingerprint = fingerprint(req.Labels)
		return s.newOpLocked(zoneScope(r), "instances.setLabels", key, in.Id, nil), nil
	})
}

func (s *Server) addAccessConfig(r *request) (any, error) {
	key := instKey(r)
	region := s.regionOfZone(r.zone)
	nic := r.URL.Query().Get("networkInterface")
	return update(s, r, s.w.Instances, key, func(ac *compute.AccessConfig, in *compute.Instance) (any, error) {
		if nic != "nic0" || len(in.NetworkInterfaces) == 0 {
			return nil, errInvalid("Invalid value for field 'networkInterface': '%s'. No such network interface.", nic)
		}
		ni := in.NetworkInterfaces[0]
		if len(ni.AccessConfigs) > 0 {
			return s.newOpLocked(zoneScope(r), "instances.addAccessConfig", key, in.Id, opInvalid("At most one access config currently supported.")), nil
		}
		if oe := s.checkNatIPLocked(r.project, region, ac.NatIP); oe != nil {
			return s.newOpLocked(zoneScope(r), "instances.addAccessConfig", key, in.Id, oe), nil
		}
		s.attachAccessConfigLocked(r.project, region, key, ac)
		ni.AccessConfigs = []*compute.AccessConfig{ac}
		return s.newOpLocked(zoneScope(r), "instances.addAccessConfig", key, in.Id, nil), nil
	})
}

func (s *Server) deleteAccessConfig(r *request) (any, error) {
	key := instKey(r)
	region := s.regionOfZone(r.zone)
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	in, err := s.instanceLocked(key)
	if err != nil {
		return nil, err
	}
	if q.Get("networkInterface") != "nic0" || len(in.NetworkInterfaces) == 0 {
		return nil, errInvalid("Invalid value for field 'networkInterface': '%s'. No such network interface.", q.Get("networkInterface"))
	}
	ni := in.NetworkInterfaces[0]
	var kept []*compute.AccessConfig
	found := false
	for _, ac := range ni.AccessConfigs {
		if ac.Name == q.Get("accessConfig") {
			found = true
			s.releaseIPLocked(r.project, region, ac.NatIP)
			continue
		}
		kept = append(kept, ac)
	}
	if !found {
		return s.newOpLocked(zoneScope(r), "instances.deleteAccessConfig", key, in.Id,
			opInvalid("Access config '%s' not found on network interface nic0.", q.Get("accessConfig"))), nil
	}
	ni.AccessConfigs = kept
	return s.newOpLocked(zoneScope(r), "instances.deleteAccessConfig", key, in.Id, nil), nil
}
