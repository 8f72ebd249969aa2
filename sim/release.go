package sim

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"

	"github.com/kubeha/kubeha/spec"
)

// Release is the body of GET /sim/v1/release: where the emulator serves
// the Kubernetes release downloads its masters' startup script makes, and
// the SHA-512 of each version's kubelet (which it also serves as the
// release's kubelet.sha512, where kubeha's plan fetches it). kubeha uses
// them when the spec names no release URL or digest, so the script's
// download-and-verify path runs against these files.
type Release struct {
	ReleaseURL    string            `json:"releaseURL"`
	KubeletSHA512 map[string]string `json:"kubeletSHA512"`
}

// kubeletStandIn is what the emulator serves as a version's kubelet: the
// kubelet itself cannot run here (it needs a container runtime and
// cgroups), so its stand-in, the emulator's static-pod runner, runs the
// pods; this file is what the startup script downloads, verifies and
// installs in its place.
func kubeletStandIn(version string) []byte {
	return []byte("#!/bin/sh\n# kubeha's emulator: the stand-in of kubelet " + version +
		". The emulator's static-pod runner (sim/kubelet) runs this machine's static pods.\nexit 0\n")
}

// Release says where the emulator serves the release downloads.
func (s *Server) Release() Release {
	r := Release{ReleaseURL: s.URL() + "/release", KubeletSHA512: map[string]string{}}
	for _, v := range spec.SupportedVersions() {
		sum := sha512.Sum512(kubeletStandIn(v))
		r.KubeletSHA512[v] = hex.EncodeToString(sum[:])
	}
	return r
}

// Downloads are Release as kubeha's executor takes them.
func (s *Server) Downloads() spec.Downloads {
	r := s.Release()
	return spec.Downloads{ReleaseURL: r.ReleaseURL, KubeletSHA512: r.KubeletSHA512}
}

func (s *Server) adminRelease(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.Release())
}

// serveKubeletDigest serves GET /release/VERSION/bin/linux/amd64/kubelet.sha512:
// the hexadecimal digest alone, as dl.k8s.io serves a release's.
func (s *Server) serveKubeletDigest(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("version")
	if _, ok := spec.ReleaseOf(v); !ok {
		http.NotFound(w, r)
		return
	}
	sum := sha512.Sum512(kubeletStandIn(v))
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, hex.EncodeToString(sum[:]))
}

// serveKubelet serves GET /release/VERSION/bin/linux/amd64/kubelet.
func (s *Server) serveKubelet(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("version")
	if _, ok := spec.ReleaseOf(v); !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(kubeletStandIn(v))
}
