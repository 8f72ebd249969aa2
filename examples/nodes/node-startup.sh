#!/bin/bash
# A worker node's startup script for a GCE managed instance group (Ubuntu
# 24.04 image): installs containerd and the kubelet of the cluster's
# release, checked against its published SHA-512, and starts the kubelet
# with the bootstrap kubeconfig `kubeha join` wrote. The kubelet asks the
# masters, through the static IP, for its client certificate; the masters
# approve and sign it, and it renews it itself (rotateCertificates).
#
# Instance metadata it reads (gcloud --metadata-from-file / --metadata):
#   bootstrap-kubeconfig  the file `kubeha join --out` wrote
#   kubernetes-version    the masters' release, e.g. v1.37.2
set -o errexit -o nounset -o pipefail

readonly MD="http://metadata.google.internal/computeMetadata/v1/instance"
metadata() { curl --fail --silent --show-error --retry 10 --retry-delay 2 -H 'Metadata-Flavor: Google' "${MD}/$1"; }

version="$(metadata attributes/kubernetes-version)"
release="https://dl.k8s.io/release/${version}/bin/linux/amd64"
name="$(metadata name)"

if ! command -v containerd >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq containerd
fi
mkdir -p /etc/containerd
containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' >/etc/containerd/config.toml
systemctl restart containerd

install -d -m 0755 /usr/local/bin /var/lib/kubelet /etc/kubernetes
if [[ ! -x /usr/local/bin/kubelet ]] || ! /usr/local/bin/kubelet --version | grep -qx "Kubernetes ${version}"; then
  curl --fail --silent --show-error --location --retry 5 -o /tmp/kubelet "${release}/kubelet"
  want="$(curl --fail --silent --show-error --location --retry 5 "${release}/kubelet.sha512")"
  if [[ "$(sha512sum /tmp/kubelet | cut -d' ' -f1)" != "${want}" ]]; then
    echo "node: the kubelet from ${release} does not match its kubelet.sha512: nothing started" >&2
    exit 1
  fi
  install -m 0755 /tmp/kubelet /usr/local/bin/kubelet
fi

(umask 077 && metadata attributes/bootstrap-kubeconfig >/etc/kubernetes/bootstrap-kubelet.conf)
cat >/etc/kubernetes/kubelet-config.yaml <<CONFIG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
clusterDNS: [10.0.0.10]
clusterDomain: cluster.local
rotateCertificates: true
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization: {mode: Webhook}
CONFIG
# The cluster CA, from the bootstrap kubeconfig, verifies the API server
# and the clients of the kubelet's own API.
install -d -m 0755 /etc/kubernetes/pki
sed -n 's/^ *certificate-authority-data: //p' /etc/kubernetes/bootstrap-kubelet.conf | base64 -d >/etc/kubernetes/pki/ca.crt

cat >/etc/systemd/system/kubelet.service <<UNIT
[Unit]
Description=kubelet
After=containerd.service
Requires=containerd.service

[Service]
ExecStart=/usr/local/bin/kubelet --config=/etc/kubernetes/kubelet-config.yaml --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/var/lib/kubelet/kubeconfig --hostname-override=${name}
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now kubelet
