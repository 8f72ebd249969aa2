package sim

// Stopping an instance's guest: its shutdown as a stop or delete starts,
// a halt, and a crash.

// shutDownLocked starts the shutdown of an instance's guest, as GCE does
// when a stop or a delete starts (the instance is STOPPING): its etcd
// stops now, within the operation's time rather than after it.
func (s *Server) shutDownLocked(key string) {
	if _, ok := s.shuttingDown[key]; ok {
		return
	}
	halt := s.haltLocked(key)
	done := make(chan struct{})
	s.shuttingDown[key] = done
	go func() {
		defer close(done)
		halt()
	}()
}

// downLocked returns the function that waits for the shutdown
// shutDownLocked began (and stops a member that started since): a stop or
// delete is DONE once its guest is down.
func (s *Server) downLocked(key string) func() {
	done := s.shuttingDown[key]
	delete(s.shuttingDown, key)
	stop := s.haltLocked(key)
	return func() {
		if done != nil {
			<-done
		}
		stop()
	}
}

// haltLocked detaches the member of an instance and returns the function that
// stops it (it blocks until etcd has closed; call it without the lock).
func (s *Server) haltLocked(key string) func() {
	if f := s.frozen[key]; f != nil {
		delete(s.frozen, key)
		return f.stop
	}
	m := s.members[key]
	if m == nil {
		return func() {}
	}
	delete(s.members, key)
	return m.stop
}

// crashLocked crashes the member of an instance. A master that runs the
// whole control plane hangs: its processes stop where they are, holding
// their ports and answering nothing, until the instance is revived,
// stopped or deleted. An etcd-only member is stopped (call the function
// returned without the lock).
func (s *Server) crashLocked(key string) func() {
	m := s.members[key]
	if m == nil || m.machine == nil {
		return s.haltLocked(key)
	}
	delete(s.members, key)
	s.frozen[key] = m
	m.machine.Freeze()
	m.set("crashed", nil)
	return func() {}
}
