#!/bin/bash
# kubeha master startup: run by the guest environment at every boot of a
# master VM. It mounts the etcd data disk (master-pd), writes the
# certificates of kubeha-tls, and starts etcd and kube-apiserver as static
# pods, all from the instance metadata kubeha sets (kube-env, kubeha-tls).
set -o errexit -o nounset -o pipefail

# The paths can be overridden from the environment (kubeha's tests do).
readonly METADATA=http://metadata.google.internal/computeMetadata/v1/instance/attributes
readonly PKI_DIR="${PKI_DIR:-/etc/srv/kubernetes/pki}"
readonly MANIFESTS="${MANIFESTS:-/etc/kubernetes/manifests}"
readonly DATA_DISK="${DATA_DISK:-/dev/disk/by-id/google-master-pd}"
readonly DATA_MOUNT="${DATA_MOUNT:-/mnt/disks/master-pd}"
readonly BOOT_DISK_DATA_DIR="${BOOT_DISK_DATA_DIR:-/var/etcd/data}"

metadata() {
  curl --fail --silent --show-error --retry 10 --retry-delay 2 \
    -H 'Metadata-Flavor: Google' "${METADATA}/$1"
}

# kube-env holds KEY: 'value' lines, as kube-up writes them.
load_kube_env() {
  local line
  while IFS= read -r line; do
    if [[ "${line}" =~ ^([A-Z0-9_]+):\ \'(.*)\'$ ]]; then
      export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
    fi
  done < <(metadata kube-env)
}

# tls_field DOC NAME prints a string field of the flat kubeha-tls JSON
# document with its \n escapes turned back into newlines.
tls_field() {
  sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" <<<"$1" | sed 's/\\n/\n/g'
}

write_secret() {
  local path="$1" content="$2"
  (umask 077 && printf '%s\n' "${content}" >"${path}")
}

write_certificates() {
  local doc
  doc="$(metadata kubeha-tls)"
  mkdir -p "${PKI_DIR}"
  chmod 0700 "${PKI_DIR}"
  write_secret "${PKI_DIR}/etcd-ca.crt" "$(tls_field "${doc}" ca)"
  write_secret "${PKI_DIR}/etcd-peer.crt" "$(tls_field "${doc}" peerCert)"
  write_secret "${PKI_DIR}/etcd-peer.key" "$(tls_field "${doc}" peerKey)"
  write_secret "${PKI_DIR}/etcd-server.crt" "$(tls_field "${doc}" serverCert)"
  write_secret "${PKI_DIR}/etcd-server.key" "$(tls_field "${doc}" serverKey)"
  write_secret "${PKI_DIR}/ca.crt" "$(tls_field "${doc}" clusterCA)"
  write_secret "${PKI_DIR}/apiserver.crt" "$(tls_field "${doc}" apiServerCert)"
  write_secret "${PKI_DIR}/apiserver.key" "$(tls_field "${doc}" apiServerKey)"
  write_secret "${PKI_DIR}/apiserver-etcd-client.crt" "$(tls_field "${doc}" apiServerEtcdClientCert)"
  write_secret "${PKI_DIR}/apiserver-etcd-client.key" "$(tls_field "${doc}" apiServerEtcdClientKey)"
}

# The etcd data lives on master-pd, formatted on first use; a master
# without that disk keeps it on the boot disk.
mount_data_disk() {
  if [[ ! -e "${DATA_DISK}" ]]; then
    ETCD_DATA_DIR="${BOOT_DISK_DATA_DIR}"
    mkdir -p "${ETCD_DATA_DIR}"
    return
  fi
  mkdir -p "${DATA_MOUNT}"
  if ! blkid "${DATA_DISK}" >/dev/null 2>&1; then
    mkfs.ext4 -F -E lazy_itable_init=0,lazy_journal_init=0,discard "${DATA_DISK}"
  fi
  if ! mountpoint -q "${DATA_MOUNT}"; then
    mount -o discard,defaults "${DATA_DISK}" "${DATA_MOUNT}"
  fi
  ETCD_DATA_DIR="${DATA_MOUNT}/var/etcd/data"
  mkdir -p "${ETCD_DATA_DIR}"
  chmod 0700 "${ETCD_DATA_DIR}"
}

write_etcd_manifest() {
  mkdir -p "${MANIFESTS}"
  cat >"${MANIFESTS}/etcd.yaml" <<MANIFEST
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: etcd
    image: ${ETCD_IMAGE}
    command:
    - etcd
    - --name=${ETCD_NAME}
    - --data-dir=/var/etcd/data
    - --listen-peer-urls=https://${INTERNAL_IP}:${ETCD_PEER_PORT}
    - --initial-advertise-peer-urls=https://${INTERNAL_IP}:${ETCD_PEER_PORT}
    - --listen-client-urls=https://${INTERNAL_IP}:${ETCD_CLIENT_PORT},https://127.0.0.1:${ETCD_CLIENT_PORT}
    - --advertise-client-urls=https://${INTERNAL_IP}:${ETCD_CLIENT_PORT}
    - --initial-cluster=${INITIAL_ETCD_CLUSTER}
    - --initial-cluster-state=${INITIAL_ETCD_CLUSTER_STATE}
    - --max-learners=${ETCD_MAX_LEARNERS}
    - --client-cert-auth=true
    - --trusted-ca-file=${PKI_DIR}/etcd-ca.crt
    - --cert-file=${PKI_DIR}/etcd-server.crt
    - --key-file=${PKI_DIR}/etcd-server.key
    - --peer-client-cert-auth=true
    - --peer-trusted-ca-file=${PKI_DIR}/etcd-ca.crt
    - --peer-cert-file=${PKI_DIR}/etcd-peer.crt
    - --peer-key-file=${PKI_DIR}/etcd-peer.key
    volumeMounts:
    - {name: data, mountPath: /var/etcd/data}
    - {name: pki, mountPath: ${PKI_DIR}, readOnly: true}
  volumes:
  - {name: data, hostPath: {path: ${ETCD_DATA_DIR}}}
  - {name: pki, hostPath: {path: ${PKI_DIR}}}
MANIFEST
}

write_apiserver_manifest() {
  cat >"${MANIFESTS}/kube-apiserver.yaml" <<MANIFEST
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: kube-apiserver
    image: ${KUBE_APISERVER_IMAGE}
    command:
    - kube-apiserver
    - --advertise-address=${MASTER_ADVERTISE_ADDRESS}
    - --secure-port=443
    - --etcd-servers=https://127.0.0.1:${ETCD_CLIENT_PORT}
    - --etcd-cafile=${PKI_DIR}/etcd-ca.crt
    - --etcd-certfile=${PKI_DIR}/apiserver-etcd-client.crt
    - --etcd-keyfile=${PKI_DIR}/apiserver-etcd-client.key
    - --etcd-quorum-read=${ETCD_QUORUM_READ}
    - --tls-cert-file=${PKI_DIR}/apiserver.crt
    - --tls-private-key-file=${PKI_DIR}/apiserver.key
    - --client-ca-file=${PKI_DIR}/ca.crt
    - --service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}
    volumeMounts:
    - {name: pki, mountPath: ${PKI_DIR}, readOnly: true}
  volumes:
  - {name: pki, hostPath: {path: ${PKI_DIR}}}
MANIFEST
}

main() {
  load_kube_env
  write_certificates
  mount_data_disk
  write_etcd_manifest
  write_apiserver_manifest
  if systemctl list-unit-files kubelet.service >/dev/null 2>&1; then
    systemctl enable --now kubelet.service
  fi
  echo "kubeha: ${KUBERNETES_MASTER_NAME} started etcd ${ETCD_NAME} (${INITIAL_ETCD_CLUSTER_STATE}) and kube-apiserver"
}

# Sourcing the script (as kubeha's tests do) defines the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
