package sim

import (
	"cmp"

	compute "google.golang.org/api/compute/v1"
)

// Addresses: regional INTERNAL addresses in the emulator's subnet and
// EXTERNAL ones (loopback addresses, see balancer.go).

func addrKey(r *request) string { return regionScope(r) + "/addresses/" + r.name }

func (s *Server) insertAddress(r *request) (any, error) {
	return create(s, r, s.w.Addresses, addrKey, func(a *compute.Address) string { return a.Name }, func(key string, a *compute.Address) (any, error) {
		a.AddressType = cmp.Or(a.AddressType, "EXTERNAL")
		switch a.AddressType {
		case "EXTERNAL":
			if a.Address != "" && s.w.ipInUse(a.Address) {
				return s.newOpLocked(regionScope(r), "addresses.insert", key, 0, opInvalid("IP address %s is already reserved.", a.Address)), nil
			}
			if a.Address == "" {
				a.Address = s.w.allocExternal()
			}
			a.NetworkTier = cmp.Or(a.NetworkTier, "PREMIUM")
		case "INTERNAL":
			_, sk, err := s.interfaceSubnetLocked(r.project, r.region, a.Network, a.Subnetwork, "resource")
			if err != nil {
				return nil, err
			}
			if a.Address != "" {
				if !s.w.inBlock(sk, a.Address) {
					return s.newOpLocked(regionScope(r), "addresses.insert", key, 0,
						opInvalid("Requested internal IP address %s is not within the subnetwork's range %s.", a.Address, s.w.blockOf(sk).Loopback)), nil
				}
				if s.w.ipInUse(a.Address) {
					return s.newOpLocked(regionScope(r), "addresses.insert", key, 0, opInvalid("IP address %s is already being used by another resource.", a.Address)), nil
				}
			} else {
				ip, err := s.w.allocInternal(sk)
				if err != nil {
					return nil, &apiError{503, "resourceExhausted", err.Error()}
				}
				a.Address = ip
			}
			a.Subnetwork = link(sk)
			a.Purpose = cmp.Or(a.Purpose, "GCE_ENDPOINT")
		default:
			return nil, errInvalid("Invalid value for field 'resource.addressType': '%s'. Must be EXTERNAL or INTERNAL.", a.AddressType)
		}
		a.Kind, a.Id, a.SelfLink, a.CreationTimestamp = "compute#address", s.w.newID(), link(key), nowStamp()
		a.Region = link(regionScope(r))
		a.Status, a.Users = "RESERVING", nil // RESERVED when its operation is DONE
		a.LabelFingerprint = fingerprint(a.Labels)
		s.w.Addresses[key] = a
		return s.newOpLocked(regionScope(r), "addresses.insert", key, a.Id, nil, effect{"address.ready", key}), nil
	})
}

func (s *Server) deleteAddress(r *request) (any, error) {
	key := addrKey(r)
	return locked(s, s.w.Addresses, key, func(a *compute.Address) (any, error) {
		if a.Status == "IN_USE" && len(a.Users) > 0 {
			return nil, errInUse(key, a.Users[0])
		}
		return s.newOpLocked(regionScope(r), "addresses.delete", key, a.Id, nil, effect{"address.delete", key}), nil
	})
}
