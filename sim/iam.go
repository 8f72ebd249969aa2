package sim

import (
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	compute "google.golang.org/api/compute/v1"
	iam "google.golang.org/api/iam/v1"
)

// IAM: the service accounts kubeha creates for its masters
// (iam.googleapis.com v1: projects.serviceAccounts create, get, delete),
// and the identities of callers. A request without credentials is the
// project's owner (kubeha's own identity: the emulator asks for none); a
// bearer token is one the emulator issued to an instance's service account
// through that machine's metadata server.

// DefaultServiceAccount is the Compute Engine default service account of
// every emulated project, as GCE names it (PROJECT_NUMBER-compute@...).
const DefaultServiceAccount = "123456789012-compute@developer.gserviceaccount.com"

var accountIDRe = regexp.MustCompile(`^[a-z]([-a-z0-9]{4,28}[a-z0-9])$`)

func serviceAccountKey(project, email string) string {
	return "projects/" + project + "/serviceAccounts/" + email
}

// serviceAccountExists says an email names an account instances may run
// as: the default one, or one created in the project.
func (w *world) serviceAccountExists(project, email string) bool {
	if email == DefaultServiceAccount || email == "default" {
		return true
	}
	_, ok := w.ServiceAccounts[serviceAccountKey(project, email)]
	return ok
}

func (s *Server) iamHandler(mux *http.ServeMux) {
	const p = "/iam/v1/projects/{project}/serviceAccounts"
	mux.HandleFunc("POST "+p, s.googleAPI(func(r *http.Request) (any, *apiError) {
		var req iam.CreateServiceAccountRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return nil, errInvalid("Invalid JSON payload received. %v", err)
		}
		if !accountIDRe.MatchString(req.AccountId) {
			return nil, errInvalid("Invalid value for field 'accountId': '%s'. accountId must be 6 to 30 lowercase letters, digits or hyphens, starting with a letter.", req.AccountId)
		}
		project := r.PathValue("project")
		email := req.AccountId + "@" + project + ".iam.gserviceaccount.com"
		key := serviceAccountKey(project, email)
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.w.ServiceAccounts[key]; ok {
			return nil, &apiError{http.StatusConflict, "alreadyExists", "Service account " + req.AccountId + " already exists within project projects/" + project + "."}
		}
		sa := &iam.ServiceAccount{Name: key, Email: email, ProjectId: project, UniqueId: fmt.Sprint(s.w.newID()), Etag: "BwY="}
		if req.ServiceAccount != nil {
			sa.DisplayName, sa.Description = req.ServiceAccount.DisplayName, req.ServiceAccount.Description
		}
		s.w.ServiceAccounts[key] = sa
		return sa, nil
	}))
	one := func(r *http.Request) string {
		return serviceAccountKey(r.PathValue("project"), r.PathValue("email"))
	}
	mux.HandleFunc("GET "+p+"/{email}", s.googleAPI(func(r *http.Request) (any, *apiError) {
		s.mu.Lock()
		defer s.mu.Unlock()
		sa, ok := s.w.ServiceAccounts[one(r)]
		if !ok {
			return nil, errNotFound(one(r))
		}
		return sa, nil
	}))
	mux.HandleFunc("DELETE "+p+"/{email}", s.googleAPI(func(r *http.Request) (any, *apiError) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.w.ServiceAccounts[one(r)]; !ok {
			return nil, errNotFound(one(r))
		}
		delete(s.w.ServiceAccounts, one(r))
		return struct{}{}, nil
	}))
}

// googleAPI serves one method of an API other than Compute: JSON in and
// out, errors in Google's shape. Unlike Compute's, these requests are not
// counted (GET /sim/v1/requests counts Compute's).
func (s *Server) googleAPI(h func(r *http.Request) (any, *apiError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			err.write(w)
			return
		}
		writeAdmin(w, v)
	}
}

// token is the access token the metadata server of an instance running as
// email hands out: the email, signed with the emulator's key.
func (s *Server) token(email string) string {
	mac := hmac.New(sha256.New, s.tokenKey[:])
	mac.Write([]byte(email))
	return "ya29.sim." + base64.RawURLEncoding.EncodeToString([]byte(email)) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// caller is who makes a request: "" for the project's owner (no
// credentials), else "serviceAccount:EMAIL" of a token the emulator issued.
func (s *Server) caller(r *http.Request) (string, *apiError) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "", nil
	}
	parts := strings.Split(strings.TrimPrefix(auth, "Bearer "), ".")
	if len(parts) == 4 && parts[0] == "ya29" && parts[1] == "sim" {
		if email, err := base64.RawURLEncoding.DecodeString(parts[2]); err == nil && s.token(string(email)) == strings.TrimPrefix(auth, "Bearer ") {
			return "serviceAccount:" + string(email), nil
		}
	}
	return "", &apiError{http.StatusUnauthorized, "unauthorized", "Request had invalid authentication credentials."}
}

// randomKey is a key for signing tokens, new at each start of the emulator
// (the machines ask their metadata servers for a token at each boot).
func randomKey() (k [32]byte) {
	if _, err := crand.Read(k[:]); err != nil {
		panic(fmt.Sprintf("sim: read random bytes: %v", err)) // the OS's CSPRNG failed: nothing can run
	}
	return k
}

// setServiceAccount changes the account a stopped instance runs as.
func (s *Server) setServiceAccount(r *request) (any, error) {
	key := instKey(r)
	return update(s, r, s.w.Instances, key, func(req *compute.InstancesSetServiceAccountRequest, in *compute.Instance) (any, error) {
		if in.Status != "TERMINATED" {
			return nil, errInvalid("The instance must be stopped to change its service account; it is %s.", in.Status)
		}
		if req.Email == "default" {
			req.Email = DefaultServiceAccount
		}
		if !s.w.serviceAccountExists(r.project, req.Email) {
			return s.newOpLocked(zoneScope(r), "instances.setServiceAccount", key, in.Id, opNotFound(serviceAccountKey(r.project, req.Email))), nil
		}
		in.ServiceAccounts = []*compute.ServiceAccount{{Email: req.Email, Scopes: req.Scopes}}
		return s.newOpLocked(zoneScope(r), "instances.setServiceAccount", key, in.Id, nil), nil
	})
}
