package executor

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/spec"
)

// TestResolveDownloadsFetchesTheReleaseDigest: with no digest in the spec
// or in kubeha, the plan's kubelet digest is the release's kubelet.sha512
// (the emulator serves one, as dl.k8s.io does), shown in the plan and
// used by the boots; a saved plan's pinned digest is used without
// fetching; the spec's digest wins; an unreachable release URL or a file
// that is no digest fails naming the URL.
func TestResolveDownloadsFetchesTheReleaseDigest(t *testing.T) {
	e := newEnv(t, sim.Options{}, 3)
	ctx := context.Background()
	sp := e.sp
	version := sp.Spec.Kubernetes.Version
	want := e.srv.Release().KubeletSHA512[version]
	sp.Spec.Kubernetes.KubeletSHA512 = "" // kubeha carries no digest of this release
	if r, _ := spec.ReleaseOf(version); r.KubeletSHA512 != "" {
		t.Skipf("kubeha carries the digest of %s: nothing is fetched", version)
	}
	p, obs := e.plan(t)
	if err := CheckDownloads(p, sp, obs, spec.Downloads{}); err == nil || !strings.Contains(err.Error(), "spec.kubernetes.kubeletSHA512") {
		t.Fatalf("without a digest, CheckDownloads: %v", err)
	}
	sumURL := spec.KubeletURL(sp.Spec.Kubernetes.ReleaseURL, version) + ".sha512"
	d, err := ResolveDownloads(ctx, p, sp, obs, spec.Downloads{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Kubelets) != 1 || p.Kubelets[0] != (planner.Kubelet{Version: version, URL: spec.KubeletURL(sp.Spec.Kubernetes.ReleaseURL, version), SHA512: want, Source: sumURL}) {
		t.Fatalf("the plan's kubelets: %+v, want the digest %s from %s", p.Kubelets, want, sumURL)
	}
	if _, sum, err := sp.Kubelet(version, d); err != nil || sum != want {
		t.Fatalf("the boots' digest: %s, %v", sum, err)
	}
	if err := CheckDownloads(p, sp, obs, d); err != nil {
		t.Fatal(err)
	}

	// A saved plan's digest is pinned: nothing is fetched (the URL now
	// refuses connections).
	saved := p.Kubelets
	closed := closedURL(t)
	sp.Spec.Kubernetes.ReleaseURL = closed
	pinned := []planner.Kubelet{{Version: version, SHA512: strings.Repeat("c", 128), Source: spec.KubeletURL(closed, version) + ".sha512"}}
	if d, err := ResolveDownloads(ctx, p, sp, obs, spec.Downloads{}, pinned); err != nil || d.Fetched[version] != pinned[0].SHA512 {
		t.Fatalf("with a pinned digest: %v %v", d.Fetched, err)
	}
	_, err = ResolveDownloads(ctx, p, sp, obs, spec.Downloads{}, saved) // pinned for another URL
	if err == nil || !strings.Contains(err.Error(), spec.KubeletURL(closed, version)+".sha512") || !strings.Contains(err.Error(), "spec.kubernetes.kubeletSHA512") {
		t.Fatalf("an unreachable release URL: %v", err)
	}

	// The spec's digest is used as it is.
	sp.Spec.Kubernetes.KubeletSHA512 = strings.Repeat("d", 128)
	if _, err := ResolveDownloads(ctx, p, sp, obs, spec.Downloads{}, nil); err != nil || p.Kubelets[0].Source != "spec.kubernetes.kubeletSHA512" || p.Kubelets[0].SHA512 != sp.Spec.Kubernetes.KubeletSHA512 {
		t.Fatalf("the spec's digest: %+v %v", p.Kubelets, err)
	}
	sp.Spec.Kubernetes.KubeletSHA512 = ""

	// A release that serves something else than a digest.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>mirror maintenance</html>")) }))
	defer bad.Close()
	sp.Spec.Kubernetes.ReleaseURL = bad.URL
	if _, err := ResolveDownloads(ctx, p, sp, obs, spec.Downloads{}, nil); err == nil || !strings.Contains(err.Error(), "holds no SHA-512 digest") || !strings.Contains(err.Error(), bad.URL) {
		t.Fatalf("a file that is no digest: %v", err)
	}
	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	sp.Spec.Kubernetes.ReleaseURL = missing.URL
	if _, err := ResolveDownloads(ctx, p, sp, obs, spec.Downloads{}, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a release without the file: %v", err)
	}
}

// closedURL is an http URL on which nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/release"
}
