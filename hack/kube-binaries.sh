#!/usr/bin/env bash
# Builds the control-plane binaries the emulator's masters run, at the
# versions kubeha deploys, into KUBEHA_KUBE_BINARIES (default
# .kubeha/bin/kubernetes-<version> in the checkout): etcd and etcdutl from
# kubeha's own go.mod, and one multi-call binary of kube-apiserver,
# kube-controller-manager and kube-scheduler from k8s.io/kubernetes (the
# tools module hack/kube, so that kubeha's go.mod never holds Kubernetes),
# and the stand-in for kOps' kube-apiserver-healthcheck image
# (hack/apiserver-healthcheck) at the tag the masters run.
# A build already there, of the same versions, is kept.
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
readonly K8S_VERSION="$(cd hack/kube && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
readonly ETCD_VERSION="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
readonly HEALTHCHECK_VERSION="$(sed -n 's/.*kops\/kube-apiserver-healthcheck:\([0-9.]*\)".*/\1/p' metadata/render.go)"
readonly ADDON_MANAGER_VERSION="$(sed -n 's/.*addon-manager\/kube-addon-manager:\([v0-9.]*\)".*/\1/p' metadata/addons.go)"
readonly OUT="${KUBEHA_KUBE_BINARIES:-$PWD/.kubeha/bin/kubernetes-${K8S_VERSION}}"
readonly STAMP="${OUT}/VERSIONS"
readonly COMMANDS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubemark"
want="kubernetes ${K8S_VERSION} etcd ${ETCD_VERSION} etcdutl ${ETCD_VERSION} kube-apiserver-healthcheck ${HEALTHCHECK_VERSION} kube-addon-manager ${ADDON_MANAGER_VERSION} commands ${COMMANDS// /,}"
if [[ -f "${STAMP}" && "$(cat "${STAMP}")" == "${want}" && -x "${OUT}/kube" && -x "${OUT}/etcd" && -x "${OUT}/etcdutl" && -x "${OUT}/kube-apiserver-healthcheck" && -x "${OUT}/kube-addons.sh" && -x "${OUT}/kube-addons-main.sh" ]]; then
  echo "kube-binaries: ${want} already built in ${OUT}"
  exit 0
fi
mkdir -p "${OUT}"
rm -f "${STAMP}"
start=$(date +%s)
# etcd, as etcd's release builds it (CGO off).
CGO_ENABLED=0 go build -trimpath -o "${OUT}/etcd" ./hack/etcd
# etcdutl, as the etcd image carries it: a restore runs it on the masters.
CGO_ENABLED=0 go build -trimpath -o "${OUT}/etcdutl" ./hack/etcdutl
CGO_ENABLED=0 go build -trimpath -o "${OUT}/kube-apiserver-healthcheck" ./hack/apiserver-healthcheck
# Kubernetes, version-stamped as its release builds are, so that --version
# prints the release.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitTreeState=clean"
  ldflags+=" -X ${pkg}.gitMajor=$(cut -d. -f1 <<<"${K8S_VERSION#v}") -X ${pkg}.gitMinor=$(cut -d. -f2 <<<"${K8S_VERSION}")"
done
(cd hack/kube && CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${OUT}/kube" .)
# The add-on manager image's scripts (kube-addons-main.sh, kube-addons.sh)
# of the same release; its kubectl is the one built above.
for f in kube-addons-main.sh kube-addons.sh; do
  cp "$(cd hack/kube && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/cluster/addons/addon-manager/${f}" "${OUT}/${f}"
  chmod 0755 "${OUT}/${f}"
done
for c in ${COMMANDS}; do
  ln -sf kube "${OUT}/${c}"
done
echo "${want}" >"${STAMP}"
echo "kube-binaries: built ${want} in ${OUT} in $(( $(date +%s) - start ))s"
