package sim

import (
	"cmp"
	"slices"

	compute "google.golang.org/api/compute/v1"
)

// Target pools: the masters behind the load balancer.

func poolKey(r *request) string { return regionScope(r) + "/targetPools/" + r.name }

func (s *Server) insertTargetPool(r *request) (any, error) {
	return create(s, r, s.w.TargetPools, poolKey, func(p *compute.TargetPool) string { return p.Name }, func(key string, p *compute.TargetPool) (any, error) {
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
		p.SessionAffinity = cmp.Or(p.SessionAffinity, "NONE")
		s.w.TargetPools[key] = p
		return s.newOpLocked(regionScope(r), "targetPools.insert", key, p.Id, nil), nil
	})
}

func (s *Server) deleteTargetPool(r *request) (any, error) {
	key := poolKey(r)
	return locked(s, s.w.TargetPools, key, func(p *compute.TargetPool) (any, error) {
		if user := userOf(s.w.ForwardingRules, r.project, key, func(f *compute.ForwardingRule) []string { return []string{f.Target} }); user != "" {
			return nil, errInUse(key, link(user))
		}
		return s.newOpLocked(regionScope(r), "targetPools.delete", key, p.Id, nil, effect{"targetPool.delete", key}), nil
	})
}

func (s *Server) poolAddInstance(r *request) (any, error) {
	key := poolKey(r)
	return update(s, r, s.w.TargetPools, key, func(req *compute.TargetPoolsAddInstanceRequest, p *compute.TargetPool) (any, error) {
		for _, ref := range req.Instances {
			ik := relPath(r.project, ref.Instance)
			if _, ok := s.w.Instances[ik]; !ok {
				return s.newOpLocked(regionScope(r), "targetPools.addInstance", key, p.Id, opNotFound(ik)), nil
			}
		}
		for _, ref := range req.Instances {
			if l := link(relPath(r.project, ref.Instance)); !contains(p.Instances, l) {
				p.Instances = append(p.Instances, l)
			}
		}
		return s.newOpLocked(regionScope(r), "targetPools.addInstance", key, p.Id, nil), nil
	})
}

func (s *Server) poolRemoveInstance(r *request) (any, error) {
	key := poolKey(r)
	return update(s, r, s.w.TargetPools, key, func(req *compute.TargetPoolsRemoveInstanceRequest, p *compute.TargetPool) (any, error) {
		for _, ref := range req.Instances {
			l := link(relPath(r.project, ref.Instance))
			p.Instances = slices.DeleteFunc(p.Instances, func(in string) bool { return in == l })
		}
		return s.newOpLocked(regionScope(r), "targetPools.removeInstance", key, p.Id, nil), nil
	})
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
