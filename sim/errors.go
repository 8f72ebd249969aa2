package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// apiError is an error response in the shape of the real API's
// (googleapi.Error decodes it).
type apiError struct {
	Code    int
	Reason  string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Code, e.Reason, e.Message) }

func (e *apiError) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.Code)
	body := map[string]any{"error": map[string]any{
		"code":    e.Code,
		"message": e.Message,
		"errors":  []map[string]string{{"message": e.Message, "domain": "global", "reason": e.Reason}},
	}}
	_ = json.NewEncoder(w).Encode(body)
}

func errNotFound(path string) *apiError {
	return &apiError{http.StatusNotFound, "notFound", fmt.Sprintf("The resource '%s' was not found", path)}
}

func errAlreadyExists(path string) *apiError {
	return &apiError{http.StatusConflict, "alreadyExists", fmt.Sprintf("The resource '%s' already exists", path)}
}

func errInvalid(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid", fmt.Sprintf(format, args...)}
}

func errInUse(path, user string) *apiError {
	return &apiError{http.StatusBadRequest, "resourceInUseByAnotherResource",
		fmt.Sprintf("The %s resource '%s' is already being used by '%s'", kindOfPath(path), path, user)}
}

func errFingerprint(what string) *apiError {
	return &apiError{http.StatusPreconditionFailed, "conditionNotMet",
		fmt.Sprintf("Supplied fingerprint does not match current %s fingerprint.", what)}
}

// opError is a failure reported inside a DONE operation, as GCE reports
// problems it finds after accepting a request.
type opError struct {
	Code    string // e.g. RESOURCE_NOT_FOUND
	Message string
	HTTP    int
}

func opNotFound(path string) *opError {
	return &opError{"RESOURCE_NOT_FOUND", fmt.Sprintf("The resource '%s' was not found", path), http.StatusNotFound}
}

func opInUse(path, user string) *opError {
	return &opError{"RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
		fmt.Sprintf("The %s resource '%s' is already being used by '%s'", kindOfPath(path), path, user), http.StatusBadRequest}
}

// opNotReady: a resource still being created cannot be used yet.
func opNotReady(path string) *opError {
	return &opError{"RESOURCE_NOT_READY", fmt.Sprintf("The resource '%s' is not ready", path), http.StatusBadRequest}
}

func opInvalid(format string, args ...any) *opError {
	return &opError{"INVALID_USAGE", fmt.Sprintf(format, args...), http.StatusBadRequest}
}
