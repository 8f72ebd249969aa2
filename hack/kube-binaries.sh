#!/usr/bin/env bash
# Builds the control-plane binaries the emulator's masters run, for every
# Kubernetes release kubeha deploys (spec/releases.go), each into
# KUBEHA_KUBE_BINARIES/kubernetes-<version> (default: .kubeha/bin in the
# checkout): etcd and etcdutl, one multi-call binary of kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and kubemark from
# k8s.io/kubernetes (the tools module hack/kube, so that kubeha's go.mod
# never holds Kubernetes), the add-on manager's scripts, and the stand-in
# for kOps' kube-apiserver-healthcheck image (hack/apiserver-healthcheck)
# at the tag the masters run.
#
# The newest release is hack/kube/go.mod, with the etcd of kubeha's own
# go.mod; the one before it is hack/kube/go.1.36.mod, with the etcd of
# hack/etcd/etcd-3.6.mod (go build -modfile: the same mains, other
# versions). A build already there, of the same versions, is kept.
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
readonly ROOT="${KUBEHA_KUBE_BINARIES:-$PWD/.kubeha/bin}"
readonly HEALTHCHECK_VERSION="$(sed -n 's/.*kops\/kube-apiserver-healthcheck:\([0-9.]*\)".*/\1/p' metadata/render.go)"
readonly ADDON_MANAGER_VERSION="$(sed -n 's/.*addon-manager\/kube-addon-manager:\([v0-9.]*\)".*/\1/p' metadata/addons.go)"
readonly COMMANDS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubemark"

# release KUBE_MODFILE ETCD_MODFILE: ETCD_MODFILE is "" for kubeha's go.mod.
release() {
  local kube_mod="$1" etcd_mod="$2"
  local k8s etcd out stamp want start
  k8s="$(cd hack/kube && go list -modfile="${kube_mod}" -m -f '{{.Version}}' k8s.io/kubernetes)"
  etcd="$(go list ${etcd_mod:+-modfile="${etcd_mod}"} -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
  out="${ROOT}/kubernetes-${k8s}"
  stamp="${out}/VERSIONS"
  want="kubernetes ${k8s} etcd ${etcd} etcdutl ${etcd} kube-apiserver-healthcheck ${HEALTHCHECK_VERSION} kube-addon-manager ${ADDON_MANAGER_VERSION} commands ${COMMANDS// /,}"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" && -x "${out}/kube" && -x "${out}/etcd" && -x "${out}/etcdutl" && -x "${out}/kube-apiserver-healthcheck" && -x "${out}/kube-addons.sh" && -x "${out}/kube-addons-main.sh" ]]; then
    echo "kube-binaries: ${want} already built in ${out}"
    return
  fi
  mkdir -p "${out}"
  rm -f "${stamp}"
  start=$(date +%s)
  # etcd and etcdutl (a restore runs it on the masters, as the etcd image
  # carries it), as etcd's release builds them (CGO off).
  if [[ -z "${etcd_mod}" ]]; then
    CGO_ENABLED=0 go build -trimpath -o "${out}/etcd" ./hack/etcd
    CGO_ENABLED=0 go build -trimpath -o "${out}/etcdutl" ./hack/etcdutl
  else
    CGO_ENABLED=0 go build -trimpath -modfile="${etcd_mod}" -o "${out}/etcd" go.etcd.io/etcd/server/v3
    CGO_ENABLED=0 go build -trimpath -modfile="${etcd_mod}" -o "${out}/etcdutl" go.etcd.io/etcd/etcdutl/v3
  fi
  CGO_ENABLED=0 go build -trimpath -o "${out}/kube-apiserver-healthcheck" ./hack/apiserver-healthcheck
  # Kubernetes, version-stamped as its release builds are, so that --version
  # prints the release.
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${k8s} -X ${pkg}.gitTreeState=clean"
    ldflags+=" -X ${pkg}.gitMajor=$(cut -d. -f1 <<<"${k8s#v}") -X ${pkg}.gitMinor=$(cut -d. -f2 <<<"${k8s}")"
  done
  (cd hack/kube && CGO_ENABLED=0 go build -modfile="${kube_mod}" -trimpath -ldflags "${ldflags}" -o "${out}/kube" .)
  # The add-on manager image's scripts (kube-addons-main.sh, kube-addons.sh)
  # of the same release; its kubectl is the one built above.
  local src f c
  src="$(cd hack/kube && go list -modfile="${kube_mod}" -m -f '{{.Dir}}' k8s.io/kubernetes)"
  for f in kube-addons-main.sh kube-addons.sh; do
    cp "${src}/cluster/addons/addon-manager/${f}" "${out}/${f}"
    chmod 0755 "${out}/${f}"
  done
  for c in ${COMMANDS}; do
    ln -sf kube "${out}/${c}"
  done
  echo "${want}" >"${stamp}"
  echo "kube-binaries: built ${want} in ${out} in $(( $(date +%s) - start ))s"
}

release go.mod ""
release go.1.36.mod hack/etcd/etcd-3.6.mod
