package sim

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"
)

// newOpLocked records an operation of method on target and schedules its
// completion after the method's latency. A non-nil oe makes it finish DONE
// with that error, and nothing else happens. effects run when it finishes.
// With no latency the operation is already DONE when returned, as GCE
// sometimes answers.
func (s *Server) newOpLocked(scope, method, targetRel string, targetID uint64, oe *opError, effects ...effect) *compute.Operation {
	id := s.w.newID()
	now := time.Now()
	name := fmt.Sprintf("operation-%d-%x", now.UnixMilli(), id)
	key := scope + "/operations/" + name
	opType := method[strings.LastIndex(method, ".")+1:]
	op := &compute.Operation{
		Kind:          "compute#operation",
		Id:            id,
		Name:          name,
		OperationType: opType,
		Status:        "PENDING",
		TargetLink:    link(targetRel),
		TargetId:      targetID,
		InsertTime:    nowStamp(),
		SelfLink:      link(key),
		User:          "kubeha-sim@example.invalid",
		Progress:      0,
	}
	switch {
	case strings.Contains(scope, "/zones/"):
		op.Zone = link(scope)
	case strings.Contains(scope, "/regions/"):
		op.Region = link(scope)
	}
	if oe != nil {
		op.Error = &compute.OperationError{Errors: []*compute.OperationErrorErrors{{Code: oe.Code, Message: oe.Message}}}
		op.HttpErrorStatusCode = int64(oe.HTTP)
		op.HttpErrorMessage = http.StatusText(oe.HTTP)
		effects = nil
	}
	lat := s.latencyOf(method)
	o := &operation{Op: op, Started: now, DoneAt: now.Add(lat), Finish: effects}
	s.w.Operations[key] = o
	s.waiters[key] = make(chan struct{})
	s.persistLocked()
	if lat <= 0 {
		// Finish inline: the caller's response then shows DONE.
		s.mu.Unlock()
		s.finishOp(key)
		s.mu.Lock()
		return s.opViewLocked(key)
	}
	s.timers[key] = time.AfterFunc(lat, func() { s.finishOp(key) })
	return s.opViewLocked(key)
}

// opViewLocked is a copy of an operation with its status brought up to date.
func (s *Server) opViewLocked(key string) *compute.Operation {
	o := s.w.Operations[key]
	if o == nil {
		return nil
	}
	if o.Op.Status == "PENDING" && time.Since(o.Started) >= time.Until(o.DoneAt)/10 {
		o.Op.Status = "RUNNING"
		o.Op.StartTime = nowStamp()
	}
	if o.Op.Status == "RUNNING" {
		total := o.DoneAt.Sub(o.Started)
		if total > 0 {
			o.Op.Progress = int64(min(99, 100*time.Since(o.Started)/total))
		}
	}
	cp := *o.Op
	return &cp
}

// finishOp applies an operation's effects and marks it DONE. Effects that
// block (stopping an etcd member) run without the lock. It is idempotent.
func (s *Server) finishOp(key string) {
	s.mu.Lock()
	o := s.w.Operations[key]
	if o == nil || o.Op.Status == "DONE" || o.Op.Status == "FINISHING" {
		s.mu.Unlock()
		return
	}
	o.Op.Status = "RUNNING"
	if o.Op.StartTime == "" {
		o.Op.StartTime = nowStamp()
	}
	var after []func()
	for _, e := range o.Finish {
		after = append(after, s.applyLocked(e)...)
	}
	s.mu.Unlock()
	for _, f := range after {
		f()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o.Op.Status = "DONE"
	o.Op.Progress = 100
	o.Op.EndTime = nowStamp()
	o.Finish = nil
	delete(s.timers, key)
	s.persistLocked()
	if ch, ok := s.waiters[key]; ok {
		close(ch)
		delete(s.waiters, key)
	}
}

// opKey is the key of the operation a request names.
func opKey(r *request) string {
	switch {
	case r.zone != "":
		return "projects/" + r.project + "/zones/" + r.zone + "/operations/" + r.name
	case r.region != "":
		return "projects/" + r.project + "/regions/" + r.region + "/operations/" + r.name
	}
	return "projects/" + r.project + "/global/operations/" + r.name
}

func (s *Server) getOperation(r *request) (any, error) {
	key := opKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.opViewLocked(key)
	if op == nil {
		return nil, errNotFound(key)
	}
	return op, nil
}

// waitOperation blocks until the operation is DONE or the wait times out
// (returning it still RUNNING, as the real API may), or the client goes away.
func (s *Server) waitOperation(r *request) (any, error) {
	key := opKey(r)
	s.mu.Lock()
	if s.w.Operations[key] == nil {
		s.mu.Unlock()
		return nil, errNotFound(key)
	}
	ch := s.waiters[key]
	s.mu.Unlock()
	if ch != nil {
		t := time.NewTimer(s.opts.WaitTimeout)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
		case <-r.Context().Done():
		case <-s.closed:
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opViewLocked(key), nil
}

func (s *Server) listOperations(r *request) (any, error) {
	prefix := strings.TrimSuffix(opKey(r), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.w.Operations {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var items []*compute.Operation
	for _, k := range keys {
		items = append(items, s.opViewLocked(k))
	}
	page, next, err := paginate(r, items, opMatcher)
	if err != nil {
		return nil, err
	}
	return &compute.OperationList{Kind: "compute#operationList", Items: page, NextPageToken: next, SelfLink: link(strings.TrimSuffix(prefix, "/"))}, nil
}

func opMatcher(op *compute.Operation) any { return op }
