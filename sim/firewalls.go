package sim

import (
	"cmp"

	compute "google.golang.org/api/compute/v1"
)

// Firewalls: global rules of the project's networks.

func fwKey(r *request) string { return globalScope(r) + "/firewalls/" + r.name }

func (s *Server) insertFirewall(r *request) (any, error) {
	return create(s, r, s.w.Firewalls, fwKey, func(f *compute.Firewall) string { return f.Name }, func(key string, f *compute.Firewall) (any, error) {
		if oe := s.normalizeFirewall(r, f); oe != nil {
			return s.newOpLocked(globalScope(r), "firewalls.insert", key, 0, oe), nil
		}
		f.Kind, f.Id, f.SelfLink, f.CreationTimestamp = "compute#firewall", s.w.newID(), link(key), nowStamp()
		s.w.Firewalls[key] = f
		return s.newOpLocked(globalScope(r), "firewalls.insert", key, f.Id, nil), nil
	})
}

func (s *Server) normalizeFirewall(r *request, f *compute.Firewall) *opError {
	nk := relPath(r.project, cmp.Or(f.Network, "global/networks/default"))
	if _, ok := s.w.Networks[nk]; !ok {
		return opNotFound(nk)
	}
	f.Network = link(nk)
	f.Direction = cmp.Or(f.Direction, "INGRESS")
	if f.Priority == 0 {
		f.Priority = 1000
	}
	return nil
}

// patchFirewall applies a JSON merge patch, as firewalls.patch does.
func (s *Server) patchFirewall(r *request) (any, error) {
	key := fwKey(r)
	return update(s, r, s.w.Firewalls, key, func(patch *map[string]any, f *compute.Firewall) (any, error) {
		cur := map[string]any{}
		if err := remarshal(f, &cur); err != nil {
			return nil, err
		}
		for k, v := range *patch {
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
	})
}

func (s *Server) deleteFirewall(r *request) (any, error) {
	key := fwKey(r)
	return locked(s, s.w.Firewalls, key, func(f *compute.Firewall) (any, error) {
		return s.newOpLocked(globalScope(r), "firewalls.delete", key, f.Id, nil, effect{"firewall.delete", key}), nil
	})
}
