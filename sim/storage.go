package sim

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	storage "google.golang.org/api/storage/v1"
)

// Cloud Storage (storage.googleapis.com JSON API v1): buckets, their IAM
// policies and objects, as kubeha uses them to hand a snapshot to the
// masters it restores. Only the project's owner (a request without
// credentials: kubeha) manages buckets and writes objects; an object's
// contents are given to the owner and to the members of
// roles/storage.objectViewer in its bucket's policy, and to no one else
// (403), as GCE does with uniform bucket-level access. Uploads are
// single-request (uploadType=media or multipart), which is what kubeha
// sends; resumable uploads are refused with a message saying so. An
// object's bytes live in a file under the emulator's directory, not in its
// state.

// ObjectViewerRole is the role that may read a bucket's objects.
const ObjectViewerRole = "roles/storage.objectViewer"

type bucket struct {
	Bucket  *storage.Bucket            `json:"bucket"`
	Policy  *storage.Policy            `json:"policy,omitempty"`
	Objects map[string]*storage.Object `json:"objects"`
}

var bucketNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$`)

func (s *Server) storageHandler(mux *http.ServeMux) {
	const b = "/storage/v1/b"
	mux.HandleFunc("POST "+b, s.googleAPI(s.insertBucket))
	mux.HandleFunc("GET "+b+"/{bucket}", s.googleAPI(s.ownedBucket(s.getBucket)))
	mux.HandleFunc("DELETE "+b+"/{bucket}", s.googleAPI(s.ownedBucket(s.deleteBucket)))
	mux.HandleFunc("GET "+b+"/{bucket}/iam", s.googleAPI(s.ownedBucket(s.getBucketPolicy)))
	mux.HandleFunc("PUT "+b+"/{bucket}/iam", s.googleAPI(s.ownedBucket(s.setBucketPolicy)))
	mux.HandleFunc("GET "+b+"/{bucket}/o", s.googleAPI(s.ownedBucket(s.listObjects)))
	mux.HandleFunc("GET "+b+"/{bucket}/o/{object}", s.getObject)
	mux.HandleFunc("DELETE "+b+"/{bucket}/o/{object}", s.googleAPI(s.ownedBucket(s.deleteObject)))
	mux.HandleFunc("POST /upload"+b+"/{bucket}/o", s.googleAPI(s.insertObject))
}

func (s *Server) insertBucket(r *http.Request) (any, *apiError) {
	if e := s.storageOwner(r); e != nil {
		return nil, e
	}
	var bk storage.Bucket
	if err := json.NewDecoder(r.Body).Decode(&bk); err != nil {
		return nil, errInvalid("Invalid JSON payload received. %v", err)
	}
	if !bucketNameRe.MatchString(bk.Name) || strings.Contains(bk.Name, "..") {
		return nil, errInvalid("Invalid bucket name: '%s'", bk.Name)
	}
	project := r.URL.Query().Get("project")
	if project == "" {
		return nil, errInvalid("Required parameter: project")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.Buckets[bk.Name]; ok {
		return nil, &apiError{http.StatusConflict, "conflict", "Your previous request to create the named bucket succeeded and you already own it."}
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	bk.Id, bk.Kind, bk.TimeCreated, bk.Updated = bk.Name, "storage#bucket", now, now
	bk.ProjectNumber, bk.Metageneration = 1, 1
	if bk.Location == "" {
		bk.Location = "US"
	}
	bk.Location = strings.ToUpper(bk.Location)
	if s.w.Buckets == nil {
		s.w.Buckets = map[string]*bucket{}
	}
	s.w.Buckets[bk.Name] = &bucket{Bucket: &bk, Objects: map[string]*storage.Object{}}
	s.persistLocked()
	return &bk, nil
}

// bucketLocked is the named bucket, or 404 as Cloud Storage says it.
func (s *Server) bucketLocked(name string) (*bucket, *apiError) {
	bk, ok := s.w.Buckets[name]
	if !ok {
		return nil, &apiError{http.StatusNotFound, "notFound", "The specified bucket does not exist."}
	}
	return bk, nil
}

// ownedBucket serves a method of the owner's on the request's bucket: h
// runs with the emulator locked, on the bucket.
func (s *Server) ownedBucket(h func(r *http.Request, bk *bucket) (any, *apiError)) func(r *http.Request) (any, *apiError) {
	return func(r *http.Request) (any, *apiError) {
		if e := s.storageOwner(r); e != nil {
			return nil, e
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		bk, e := s.bucketLocked(r.PathValue("bucket"))
		if e != nil {
			return nil, e
		}
		return h(r, bk)
	}
}

func (s *Server) getBucket(_ *http.Request, bk *bucket) (any, *apiError) { return bk.Bucket, nil }

func (s *Server) deleteBucket(r *http.Request, bk *bucket) (any, *apiError) {
	if len(bk.Objects) > 0 {
		return nil, &apiError{http.StatusConflict, "conflict", "The bucket you tried to delete is not empty."}
	}
	delete(s.w.Buckets, bk.Bucket.Name)
	s.persistLocked()
	return struct{}{}, nil
}

func (s *Server) getBucketPolicy(r *http.Request, bk *bucket) (any, *apiError) {
	if bk.Policy == nil {
		return &storage.Policy{Kind: "storage#policy", ResourceId: "projects/_/buckets/" + bk.Bucket.Name, Etag: "CAE="}, nil
	}
	return bk.Policy, nil
}

func (s *Server) setBucketPolicy(r *http.Request, bk *bucket) (any, *apiError) {
	var p storage.Policy
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		return nil, errInvalid("Invalid JSON payload received. %v", err)
	}
	etag := "CAE="
	if bk.Policy != nil {
		etag = bk.Policy.Etag
	}
	if p.Etag != "" && p.Etag != etag {
		return nil, &apiError{http.StatusPreconditionFailed, "conditionNotMet", "The policy's etag does not match the bucket's: read it again."}
	}
	n := 1
	if raw, err := base64.StdEncoding.DecodeString(etag); err == nil && len(raw) == 2 {
		n = int(raw[1]) + 1
	}
	p.Kind, p.ResourceId, p.Etag = "storage#policy", "projects/_/buckets/"+bk.Bucket.Name, base64.StdEncoding.EncodeToString([]byte{0x08, byte(n)})
	bk.Policy = &p
	s.persistLocked()
	return &p, nil
}

// objectFile is where an object's bytes are kept.
func (s *Server) objectFile(bucketName, object string) string {
	sum := sha256.Sum256([]byte(object))
	return filepath.Join(s.root, "storage", bucketName, hex.EncodeToString(sum[:16]))
}

// insertObject stores an upload: uploadType=media (the body is the
// object, its name in the query) or multipart (a JSON part, then the
// object).
func (s *Server) insertObject(r *http.Request) (any, *apiError) {
	if e := s.storageOwner(r); e != nil {
		return nil, e
	}
	q := r.URL.Query()
	obj := &storage.Object{Name: q.Get("name")}
	var body io.Reader
	switch q.Get("uploadType") {
	case "media":
		body = r.Body
	case "multipart":
		_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || params["boundary"] == "" {
			return nil, errInvalid("Invalid multipart request: %v", err)
		}
		mr := multipart.NewReader(r.Body, params["boundary"])
		meta, err := mr.NextPart()
		if err != nil {
			return nil, errInvalid("Invalid multipart request: no metadata part: %v", err)
		}
		if err := json.NewDecoder(meta).Decode(obj); err != nil {
			return nil, errInvalid("Invalid multipart request: metadata: %v", err)
		}
		if obj.Name == "" {
			obj.Name = q.Get("name")
		}
		media, err := mr.NextPart()
		if err != nil {
			return nil, errInvalid("Invalid multipart request: no media part: %v", err)
		}
		body = media
	default:
		return nil, errInvalid("The emulator takes uploadType=media or multipart, not %q", q.Get("uploadType"))
	}
	if obj.Name == "" {
		return nil, errInvalid("Required parameter: name")
	}
	bucketName := r.PathValue("bucket")
	s.mu.Lock()
	_, e := s.bucketLocked(bucketName)
	s.mu.Unlock()
	if e != nil {
		return nil, e
	}
	// The bytes go to a temporary file first, outside the lock: an object
	// is replaced whole or not at all.
	path := s.objectFile(bucketName, obj.Name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, &apiError{http.StatusInternalServerError, "internalError", err.Error()}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return nil, &apiError{http.StatusInternalServerError, "internalError", err.Error()}
	}
	defer os.Remove(tmp.Name())
	h5 := md5.New()
	size, err := io.Copy(io.MultiWriter(tmp, h5), body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, errInvalid("Upload cut short: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bk, e := s.bucketLocked(bucketName)
	if e != nil {
		return nil, e
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, &apiError{http.StatusInternalServerError, "internalError", err.Error()}
	}
	gen := time.Now().UnixMicro()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	obj.Bucket, obj.Kind, obj.Size, obj.Generation, obj.Metageneration = bucketName, "storage#object", uint64(size), gen, 1
	obj.Id = bucketName + "/" + obj.Name + "/" + strconv.FormatInt(gen, 10)
	obj.Md5Hash = base64.StdEncoding.EncodeToString(h5.Sum(nil))
	obj.TimeCreated, obj.Updated = now, now
	if obj.ContentType == "" {
		obj.ContentType = "application/octet-stream"
	}
	bk.Objects[obj.Name] = obj
	s.persistLocked()
	return obj, nil
}

func (s *Server) listObjects(r *http.Request, bk *bucket) (any, *apiError) {
	out := &storage.Objects{Kind: "storage#objects", Items: []*storage.Object{}}
	prefix := r.URL.Query().Get("prefix")
	for _, name := range slices.Sorted(maps.Keys(bk.Objects)) {
		if strings.HasPrefix(name, prefix) {
			out.Items = append(out.Items, bk.Objects[name])
		}
	}
	return out, nil
}

func (s *Server) deleteObject(r *http.Request, bk *bucket) (any, *apiError) {
	name := r.PathValue("object")
	if _, ok := bk.Objects[name]; !ok {
		return nil, &apiError{http.StatusNotFound, "notFound", "No such object: " + bk.Bucket.Name + "/" + name}
	}
	delete(bk.Objects, name)
	os.Remove(s.objectFile(bk.Bucket.Name, name))
	s.persistLocked()
	return struct{}{}, nil
}

// getObject serves an object's metadata, or with alt=media its bytes, to
// the owner and to the bucket's object viewers.
func (s *Server) getObject(w http.ResponseWriter, r *http.Request) {
	caller, e := s.caller(r)
	if e != nil {
		e.write(w)
		return
	}
	obj, path, e := s.readableObject(caller, r.PathValue("bucket"), r.PathValue("object"))
	if e != nil {
		e.write(w)
		return
	}
	if r.URL.Query().Get("alt") != "media" {
		writeAdmin(w, obj)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		(&apiError{http.StatusInternalServerError, "internalError", err.Error()}).write(w)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", obj.ContentType)
	w.Header().Set("Content-Length", strconv.FormatUint(obj.Size, 10))
	w.Header().Set("X-Goog-Hash", "md5="+obj.Md5Hash)
	io.Copy(w, f)
}

// readableObject is an object and its file, when caller ("" for the
// owner, else "serviceAccount:EMAIL") may read it.
func (s *Server) readableObject(caller, bucketName, name string) (*storage.Object, string, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bk, e := s.bucketLocked(bucketName)
	if e != nil {
		return nil, "", e
	}
	if caller != "" && !bk.grants(caller, ObjectViewerRole) {
		return nil, "", &apiError{http.StatusForbidden, "forbidden",
			fmt.Sprintf("%s does not have storage.objects.get access to the Google Cloud Storage object.", strings.TrimPrefix(caller, "serviceAccount:"))}
	}
	obj, ok := bk.Objects[name]
	if !ok {
		return nil, "", &apiError{http.StatusNotFound, "notFound", "No such object: " + bucketName + "/" + name}
	}
	return obj, s.objectFile(bucketName, name), nil
}

// readObject is an object's bytes as the instance's service account email
// may read them: for the emulator's etcd-only masters, which restore from
// a snapshot in Cloud Storage without a startup script.
func (s *Server) readObject(email, bucketName, name string) ([]byte, error) {
	_, path, e := s.readableObject("serviceAccount:"+email, bucketName, name)
	if e != nil {
		return nil, fmt.Errorf("read gs://%s/%s as %s: %s", bucketName, name, email, e.Message)
	}
	return os.ReadFile(path)
}

func (bk *bucket) grants(member, role string) bool {
	if bk.Policy == nil {
		return false
	}
	for _, b := range bk.Policy.Bindings {
		if b.Role == role && slices.Contains(b.Members, member) {
			return true
		}
	}
	return false
}

// storageOwner refuses a caller with credentials: only the owner manages
// buckets and writes objects.
func (s *Server) storageOwner(r *http.Request) *apiError {
	caller, e := s.caller(r)
	if e != nil {
		return e
	}
	if caller != "" {
		return &apiError{http.StatusForbidden, "forbidden", caller + " may not manage buckets or write objects in the emulator: only the project's owner does"}
	}
	return nil
}
