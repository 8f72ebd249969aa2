package sim

import (
	"cmp"
	"net/netip"

	compute "google.golang.org/api/compute/v1"
)

// Forwarding rules: the static IP on the load balancer.

func ruleKey(r *request) string { return regionScope(r) + "/forwardingRules/" + r.name }

func (s *Server) insertForwardingRule(r *request) (any, error) {
	return create(s, r, s.w.ForwardingRules, ruleKey, func(f *compute.ForwardingRule) string { return f.Name }, func(key string, f *compute.ForwardingRule) (any, error) {
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
		f.IPProtocol = cmp.Or(f.IPProtocol, "TCP")
		f.LoadBalancingScheme = cmp.Or(f.LoadBalancingScheme, "EXTERNAL")
		f.NetworkTier = cmp.Or(f.NetworkTier, "PREMIUM")
		f.LabelFingerprint = fingerprint(f.Labels)
		s.w.ForwardingRules[key] = f
		return s.newOpLocked(regionScope(r), "forwardingRules.insert", key, f.Id, nil), nil
	})
}

func (s *Server) deleteForwardingRule(r *request) (any, error) {
	key := ruleKey(r)
	return locked(s, s.w.ForwardingRules, key, func(f *compute.ForwardingRule) (any, error) {
		return s.newOpLocked(regionScope(r), "forwardingRules.delete", key, f.Id, nil, effect{"forwardingRule.delete", key}), nil
	})
}
