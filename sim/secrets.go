package sim

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"
	secretmanager "google.golang.org/api/secretmanager/v1"

	"github.com/kubeha/kubeha/metadata"
)

// Secret Manager (secretmanager.googleapis.com v1): secrets, their
// versions and IAM policies, as kubeha uses them for the masters' private
// keys. Only the project's owner (a request without credentials: kubeha)
// manages secrets; a version's payload is given to the owner and to the
// members of roles/secretmanager.secretAccessor in the secret's policy,
// and to no one else (403), as GCE does.

// AccessorRole is the role that may read a secret's versions.
const AccessorRole = "roles/secretmanager.secretAccessor"

type secret struct {
	Secret   *secretmanager.Secret `json:"secret"`
	Policy   *secretmanager.Policy `json:"policy,omitempty"`
	Versions []*secretVersion      `json:"versions"`
}

type secretVersion struct {
	Version *secretmanager.SecretVersion `json:"version"`
	Data    []byte                       `json:"data"`
}

func (s *Server) secretsHandler(mux *http.ServeMux) {
	const p = "/secretmanager/v1/projects/{project}/secrets"
	mux.HandleFunc("POST "+p, s.googleAPI(s.createSecret))
	mux.HandleFunc("GET "+p, s.googleAPI(s.listSecrets))
	mux.HandleFunc(p+"/{rest...}", s.googleAPI(s.secretMethod))
}

func (s *Server) createSecret(r *http.Request) (any, *apiError) {
	if e := s.owner(r); e != nil {
		return nil, e
	}
	id := r.URL.Query().Get("secretId")
	if !nameRe.MatchString(id) {
		return nil, errInvalid("Invalid secret ID %q: letters, digits, '-' and '_' only.", id)
	}
	var sec secretmanager.Secret
	if err := json.NewDecoder(r.Body).Decode(&sec); err != nil {
		return nil, errInvalid("Invalid JSON payload received. %v", err)
	}
	key := "projects/" + r.PathValue("project") + "/secrets/" + id
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.Secrets[key]; ok {
		return nil, &apiError{http.StatusConflict, "alreadyExists", "Secret [" + key + "] already exists."}
	}
	sec.Name, sec.CreateTime, sec.Etag = key, time.Now().UTC().Format(time.RFC3339Nano), `"1"`
	s.w.Secrets[key] = &secret{Secret: &sec}
	return &sec, nil
}

func (s *Server) listSecrets(r *http.Request) (any, *apiError) {
	if e := s.owner(r); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &secretmanager.ListSecretsResponse{}
	for _, k := range sortedKeys(s.w.Secrets, "projects/"+r.PathValue("project")+"/secrets/") {
		out.Secrets = append(out.Secrets, s.w.Secrets[k].Secret)
	}
	out.TotalSize = int64(len(out.Secrets))
	return out, nil
}

// secretMethod serves the methods on one secret or version: the name and
// the method after ':' ("S:addVersion", "S/versions/3:access").
func (s *Server) secretMethod(r *http.Request) (any, *apiError) {
	project := r.PathValue("project")
	rest, method, _ := strings.Cut(r.PathValue("rest"), ":")
	id, version, isVersion := strings.Cut(rest, "/versions")
	key := "projects/" + project + "/secrets/" + id
	caller, e := s.caller(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.w.Secrets[key]
	if !ok {
		if method == "access" && caller != "" {
			return nil, deniedAccess(key + "/versions" + version)
		}
		return nil, errNotFound(key)
	}
	if method == "access" {
		v, e := s.accessLocked(sec, caller, strings.TrimPrefix(version, "/"))
		if e != nil {
			return nil, e
		}
		crc := int64(crc32.Checksum(v.Data, crc32.MakeTable(crc32.Castagnoli)))
		return &secretmanager.AccessSecretVersionResponse{Name: v.Version.Name,
			Payload: &secretmanager.SecretPayload{Data: base64.StdEncoding.EncodeToString(v.Data), DataCrc32c: crc, ForceSendFields: []string{"DataCrc32c"}}}, nil
	}
	if caller != "" {
		return nil, &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf("Permission denied on resource '%s' for %s: only the project's owner manages secrets in the emulator", key, caller)}
	}
	switch {
	case r.Method == http.MethodGet && method == "" && !isVersion:
		return sec.Secret, nil
	case r.Method == http.MethodDelete && method == "" && !isVersion:
		delete(s.w.Secrets, key)
		return struct{}{}, nil
	case r.Method == http.MethodPost && method == "addVersion":
		var req secretmanager.AddSecretVersionRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Payload == nil {
			return nil, errInvalid("Invalid payload: %v", err)
		}
		data, err := base64.StdEncoding.DecodeString(req.Payload.Data)
		if err != nil {
			return nil, errInvalid("Invalid payload data: not base64")
		}
		v := &secretmanager.SecretVersion{Name: fmt.Sprintf("%s/versions/%d", key, len(sec.Versions)+1), State: "ENABLED",
			CreateTime: time.Now().UTC().Format(time.RFC3339Nano), Etag: `"1"`}
		sec.Versions = append(sec.Versions, &secretVersion{Version: v, Data: data})
		return v, nil
	case r.Method == http.MethodGet && method == "getIamPolicy":
		return cmp.Or(sec.Policy, &secretmanager.Policy{Version: 1, Etag: "ACAB"}), nil
	case r.Method == http.MethodPost && method == "setIamPolicy":
		var req secretmanager.SetIamPolicyRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Policy == nil {
			return nil, errInvalid("Invalid policy: %v", err)
		}
		req.Policy.Etag = "BwY" + strconv.Itoa(len(sec.Versions))
		sec.Policy = req.Policy
		return sec.Policy, nil
	case r.Method == http.MethodGet && isVersion && version == "":
		out := &secretmanager.ListSecretVersionsResponse{}
		for i := len(sec.Versions) - 1; i >= 0; i-- {
			out.Versions = append(out.Versions, sec.Versions[i].Version)
		}
		out.TotalSize = int64(len(out.Versions))
		return out, nil
	case isVersion:
		v := sec.version(strings.TrimPrefix(version, "/"))
		if v == nil {
			return nil, errNotFound(key + "/versions" + version)
		}
		switch {
		case r.Method == http.MethodGet && method == "":
			return v.Version, nil
		case r.Method == http.MethodPost && (method == "disable" || method == "enable" || method == "destroy"):
			v.Version.State = map[string]string{"disable": "DISABLED", "enable": "ENABLED", "destroy": "DESTROYED"}[method]
			if method == "destroy" {
				v.Data = nil
			}
			return v.Version, nil
		}
	}
	return nil, errInvalid("The emulator does not serve %s %s", r.Method, r.URL.Path)
}

// version is a version by number or "latest" (the newest enabled one).
func (sec *secret) version(id string) *secretVersion {
	if id == "latest" {
		for i := len(sec.Versions) - 1; i >= 0; i-- {
			if sec.Versions[i].Version.State == "ENABLED" {
				return sec.Versions[i]
			}
		}
		return nil
	}
	n, err := strconv.Atoi(id)
	if err != nil || n < 1 || n > len(sec.Versions) {
		return nil
	}
	return sec.Versions[n-1]
}

// accessLocked gives a version to the owner ("") or to a member of the
// secret's accessor role, and refuses anyone else (403).
func (s *Server) accessLocked(sec *secret, caller, version string) (*secretVersion, *apiError) {
	name := sec.Secret.Name + "/versions/" + version
	if caller != "" && !sec.grants(caller) {
		return nil, deniedAccess(name)
	}
	v := sec.version(version)
	if v == nil {
		return nil, errNotFound(name)
	}
	if v.Version.State != "ENABLED" {
		return nil, &apiError{http.StatusBadRequest, "failedPrecondition", fmt.Sprintf("%s is in %s state.", v.Version.Name, v.Version.State)}
	}
	return v, nil
}

func (sec *secret) grants(member string) bool {
	if sec.Policy == nil {
		return false
	}
	for _, b := range sec.Policy.Bindings {
		if b.Role == AccessorRole && slices.Contains(b.Members, member) {
			return true
		}
	}
	return false
}

func deniedAccess(name string) *apiError {
	return &apiError{http.StatusForbidden, "forbidden",
		fmt.Sprintf("Permission 'secretmanager.versions.access' denied for resource '%s' (or it may not exist).", name)}
}

// owner refuses a caller with credentials: only the owner manages.
func (s *Server) owner(r *http.Request) *apiError {
	caller, e := s.caller(r)
	if e != nil {
		return e
	}
	if caller != "" {
		return &apiError{http.StatusForbidden, "forbidden", "Permission denied for " + caller + ": only the project's owner manages secrets in the emulator"}
	}
	return nil
}

// accessSecretLocked reads a secret version as an instance running as
// email would: the embedded etcd members of the emulator read their keys
// so.
func (s *Server) accessSecretLocked(email, version string) ([]byte, error) {
	key, id, _ := strings.Cut(version, "/versions/")
	sec, ok := s.w.Secrets[key]
	if !ok {
		return nil, deniedAccess(version)
	}
	v, e := s.accessLocked(sec, "serviceAccount:"+email, id)
	if e != nil {
		return nil, e
	}
	return v.Data, nil
}

// serviceAccountOf is the email an instance runs as ("" for none).
func serviceAccountOf(in *compute.Instance) string {
	if len(in.ServiceAccounts) == 0 {
		return ""
	}
	return in.ServiceAccounts[0].Email
}

// readKeysLocked adds to t the private keys of the Secret Manager version
// the instance's kubeha-keys item names, read as the instance's service
// account: what the startup script does on a VM.
func (s *Server) readKeysLocked(in *compute.Instance, t *metadata.TLS) error {
	version := allItems(in)[metadata.KeyKeys]
	if version == "" {
		return nil // a master of a kubeha before Secret Manager: its keys are in kubeha-tls
	}
	email := serviceAccountOf(in)
	data, err := s.accessSecretLocked(email, version)
	if err != nil {
		return fmt.Errorf("the service account %s may not read %s (%v): grant it %s on the secret; etcd not started", cmp.Or(email, "(none)"), version, err, AccessorRole)
	}
	return t.AddKeys(string(data))
}
