package sim

import (
	"regexp"
	"strings"

	compute "google.golang.org/api/compute/v1"
)

// requestIDs: a mutating call may carry a requestId (a UUID). A call
// repeated with a requestId already seen in the project returns the
// operation of the first call, as it is now, and does nothing again, as
// GCE does, so that a retried insert after a timeout or a 5xx never
// creates twice. The emulator keeps them with its state.

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// repeatedRequest returns the operation of an earlier call with the same
// requestId, or refuses a requestId that is not a UUID. Inserts without
// one are counted (RequestCounts.InsertsWithoutRequestID).
func (s *Server) repeatedRequest(project, method, requestID string) (*compute.Operation, error) {
	if requestID == "" {
		if strings.HasSuffix(method, ".insert") {
			s.mu.Lock()
			s.noRequestID[method]++
			s.mu.Unlock()
		}
		return nil, nil
	}
	if !uuidRe.MatchString(requestID) || strings.Trim(requestID, "0-") == "" {
		return nil, errInvalid("Invalid value for field 'requestId': '%s'. The request ID must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).", requestID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.w.RequestIDs[project+"/"+strings.ToLower(requestID)]
	if !ok || s.w.Operations[key] == nil {
		return nil, nil
	}
	return s.opViewLocked(key), nil
}

// rememberRequest records the operation a requestId started.
func (s *Server) rememberRequest(project, requestID string, op *compute.Operation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.RequestIDs[project+"/"+strings.ToLower(requestID)] = strings.TrimPrefix(op.SelfLink, canonicalBase)
}
