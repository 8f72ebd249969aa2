#!/bin/bash
# kubeha master startup: run by the guest environment at every boot of a
# master VM, as kube-up's configure.sh is. From the instance metadata kubeha
# sets (kube-env, kubeha-tls) it installs the kubelet of the release,
# checked against its digest, writes the certificates and kubeconfigs,
# mounts the etcd data disk (master-pd) and, once per kubeha restore, restores
# etcd's data there from its snapshot, opens the host firewall for the
# ports the master serves, and writes the static pods of the control plane:
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler (both
# leader-elected), and the load balancer's health endpoint; then it
# configures containerd and starts the kubelet, which runs them. It is
# idempotent: a second run changes nothing.
set -o errexit -o nounset -o pipefail

# Every path the script writes is under ROOT: empty on a VM. kubeha's
# emulator runs the script for each emulated machine with KUBEHA_ROOT set to
# that machine's directory, so the same absolute paths land inside it.
readonly ROOT="${KUBEHA_ROOT:-}"
# GCE_METADATA_HOST is the variable Google's client libraries honour too.
readonly METADATA_ROOT="http://${GCE_METADATA_HOST:-metadata.google.internal}/computeMetadata/v1/instance"
readonly METADATA="${METADATA_ROOT}/attributes"
readonly SRV="${ROOT}/etc/srv/kubernetes"
readonly PKI_DIR="${PKI_DIR:-${SRV}/pki}"
readonly MANIFESTS="${MANIFESTS:-${ROOT}/etc/kubernetes/manifests}"
readonly ADDONS="${ADDONS:-${ROOT}/etc/kubernetes/addons}"
readonly DATA_DISK="${DATA_DISK:-${ROOT}/dev/disk/by-id/google-master-pd}"
readonly DATA_MOUNT="${DATA_MOUNT:-${ROOT}/mnt/disks/master-pd}"
readonly BOOT_DISK_DATA_DIR="${BOOT_DISK_DATA_DIR:-${ROOT}/var/etcd/data}"

log() { echo "kubeha: $*"; }

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

# write_secret PATH CONTENT writes a file readable by root only, and only
# when its content changed (a rerun rewrites nothing).
write_secret() {
  local path="$1" content="$2"
  if [[ -f "${path}" ]] && [[ "$(cat "${path}")" == "${content}" ]]; then
    return
  fi
  (umask 077 && printf '%s\n' "${content}" >"${path}.tmp" && mv "${path}.tmp" "${path}")
}

# private_keys FILE writes the kubeha-tls-shaped document of this master's
# private keys: the Secret Manager version kubeha-keys names, read with an
# access token of the VM's service account. Keys are never in metadata. A
# service account that may not read it stops the boot with one line, and
# leaves no file behind.
private_keys() {
  local out="$1"
  local version token email body code
  version="$(metadata kubeha-keys)"
  email="$(curl --fail --silent --show-error --retry 10 --retry-delay 2 -H 'Metadata-Flavor: Google' \
    "${METADATA_ROOT}/service-accounts/default/email")"
  token="$(curl --fail --silent --show-error --retry 10 --retry-delay 2 -H 'Metadata-Flavor: Google' \
    "${METADATA_ROOT}/service-accounts/default/token" | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')"
  body="$(mktemp "${PKI_DIR}/.access.XXXXXX")"
  code="$(curl --silent --show-error --retry 5 --retry-delay 2 -o "${body}" -w '%{http_code}' \
    -H "Authorization: Bearer ${token}" "${SECRET_MANAGER_URL}/v1/${version}:access")"
  if [[ "${code}" != 200 ]]; then
    rm -f "${body}" "${out}"
    log "the service account ${email} may not read ${version} (HTTP ${code} from Secret Manager): grant it roles/secretmanager.secretAccessor on the secret; nothing started" >&2
    exit 1
  fi
  sed -n 's/.*"data" *: *"\([^"]*\)".*/\1/p' "${body}" | base64 -d >"${out}"
  rm -f "${body}"
}

write_certificates() {
  local doc keys field file
  mkdir -p "${PKI_DIR}"
  chmod 0700 "${PKI_DIR}"
  keys="$(mktemp "${PKI_DIR}/.keys.XXXXXX")"
  private_keys "${keys}" # not in a subshell: a refusal ends the boot
  doc="$(metadata kubeha-tls)"$'\n'"$(cat "${keys}")"
  rm -f "${keys}"
  while read -r field file; do
    write_secret "${PKI_DIR}/${file}" "$(tls_field "${doc}" "${field}")"
  done <<'FILES'
ca etcd-ca.crt
peerCert etcd-peer.crt
peerKey etcd-peer.key
serverCert etcd-server.crt
serverKey etcd-server.key
clusterCA ca.crt
apiServerCert apiserver.crt
apiServerKey apiserver.key
apiServerEtcdClientCert apiserver-etcd-client.crt
apiServerEtcdClientKey apiserver-etcd-client.key
serviceAccountKey sa.key
serviceAccountPub sa.pub
controllerManagerCert controller-manager.crt
controllerManagerKey controller-manager.key
schedulerCert scheduler.crt
schedulerKey scheduler.key
healthcheckCert kube-apiserver-healthcheck.crt
healthcheckKey kube-apiserver-healthcheck.key
clusterCAKey ca.key
kubeletCert kubelet.crt
kubeletKey kubelet.key
addonManagerCert addon-manager.crt
addonManagerKey addon-manager.key
FILES
}

# write_kubeconfig NAME USER: a kubeconfig for a component of this master,
# its credentials inline, talking to the local kube-apiserver.
write_kubeconfig() {
  local name="$1" user="$2"
  write_secret "${SRV}/${name}.kubeconfig" "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://${INTERNAL_IP}:443
    certificate-authority-data: $(base64 -w0 <"${PKI_DIR}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(base64 -w0 <"${PKI_DIR}/${name}.crt")
    client-key-data: $(base64 -w0 <"${PKI_DIR}/${name}.key")
contexts:
- name: local
  context: {cluster: local, user: ${user}}
current-context: local"
}

# install_kubelet puts the kubelet of KUBERNETES_VERSION in
# /home/kubernetes/bin (COS mounts the rest of its root read-only), as
# kube-up's configure.sh does: downloaded from KUBELET_URL and checked
# against KUBELET_SHA512 before it is installed. A download with another
# digest stops the boot before anything starts. An installed kubelet with
# the right digest is kept.
install_kubelet() {
  local bin="${ROOT}/home/kubernetes/bin/kubelet" got
  mkdir -p "${bin%/*}"
  if [[ -x "${bin}" ]] && [[ "$(sha512sum <"${bin}" | cut -d' ' -f1)" == "${KUBELET_SHA512}" ]]; then
    return
  fi
  curl --fail --silent --show-error --location --retry 5 --retry-delay 3 -o "${bin}.download" "${KUBELET_URL}"
  got="$(sha512sum <"${bin}.download" | cut -d' ' -f1)"
  if [[ "${got}" != "${KUBELET_SHA512}" ]]; then
    rm -f "${bin}.download"
    log "the kubelet downloaded from ${KUBELET_URL} has SHA-512 ${got}, not ${KUBELET_SHA512}: nothing started"
    exit 1
  fi
  chmod 0755 "${bin}.download"
  mv "${bin}.download" "${bin}"
}

# write_if_changed PATH CONTENT writes a file and says (status 0) whether
# its content changed.
write_if_changed() {
  if [[ -f "$1" ]] && [[ "$(cat "$1")" == "$2" ]]; then
    return 1
  fi
  mkdir -p "${1%/*}"
  printf '%s\n' "$2" >"$1.tmp"
  mv "$1.tmp" "$1"
}

# COS runs containerd: its CRI plugin runs the static pods' containers,
# with systemd managing their cgroups as it does the kubelet's.
configure_containerd() {
  if write_if_changed "${ROOT}/etc/containerd/config.toml" 'version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true'; then
    systemctl restart containerd.service
  fi
}

# The kubelet runs the static pods of MANIFESTS and registers the master
# as a Node, as kube-up's masters do: with its own client certificate
# (system:node:NAME), tainted NODE_TAINT so that only pods that tolerate it
# (DaemonSets such as kube-proxy) run here. Its own API listens on the
# loopback only.
write_kubelet_unit() {
  local changed=1
  write_kubeconfig kubelet "system:node:${KUBERNETES_MASTER_NAME}"
  write_if_changed "${ROOT}/etc/kubernetes/kubelet-config.yaml" "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
address: 127.0.0.1
readOnlyPort: 0
cgroupDriver: systemd
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
clusterDNS: [${DNS_SERVER_IP}]
clusterDomain: ${DNS_DOMAIN}
registerNode: true
registerWithTaints:
- {key: ${NODE_TAINT%%:*}, effect: ${NODE_TAINT##*:}}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}" && changed=0
  write_if_changed "${ROOT}/etc/systemd/system/kubelet.service" "[Unit]
Description=kubelet: the static pods of the Kubernetes control plane (kubeha)
After=containerd.service
Requires=containerd.service

[Service]
ExecStart=/home/kubernetes/bin/kubelet --config=/etc/kubernetes/kubelet-config.yaml --kubeconfig=/etc/srv/kubernetes/kubelet.kubeconfig --hostname-override=${KUBERNETES_MASTER_NAME} --node-labels=${NODE_LABELS}
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target" && changed=0
  start_unit kubelet "${changed}"
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

# COS's host firewall drops everything but SSH: open exactly the ports the
# master serves (the API, etcd's client and peer ports, the load balancer's
# health check), once.
open_firewall() {
  local port
  for port in 443 "${ETCD_CLIENT_PORT}" "${ETCD_PEER_PORT}" "${HEALTHCHECK_PORT}"; do
    if ! iptables -w -C INPUT -p tcp --dport "${port}" -j ACCEPT 2>/dev/null; then
      iptables -w -A INPUT -p tcp --dport "${port}" -j ACCEPT
    fi
  done
}

# write_manifest NAME CONTENT writes a static pod when it changed.
write_manifest() {
  mkdir -p "${MANIFESTS}"
  if [[ -f "${MANIFESTS}/$1.yaml" ]] && [[ "$(cat "${MANIFESTS}/$1.yaml")" == "$2" ]]; then
    return
  fi
  printf '%s\n' "$2" >"${MANIFESTS}/$1.yaml.tmp"
  mv "${MANIFESTS}/$1.yaml.tmp" "${MANIFESTS}/$1.yaml"
}

# pod NAME IMAGE ARGS...: a static pod of one host-network container whose
# command is NAME ARGS (the image's entrypoint with ARGS for the health
# endpoint), with the PKI, the kubeconfigs and etcd's data as
# host paths at the same paths.
pod() {
  local name="$1" image="$2" arg
  shift 2
  printf '%s\n' "apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: kube-system
  labels: {component: ${name}, tier: control-plane}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: ${name}
    image: ${image}"
  if [[ "${name}" == kube-apiserver-healthcheck ]]; then
    # The image's own entrypoint, as kOps runs it.
    printf '%s\n' "    args:"
  else
    printf '%s\n' "    command:
    - ${name}"
  fi
  for arg in "$@"; do
    printf '    - %s\n' "${arg}"
  done
  printf '%s' "    volumeMounts:
    - {name: srv, mountPath: ${SRV}, readOnly: true}"
  if [[ "${name}" == etcd ]]; then
    printf '%s' "
    - {name: data, mountPath: ${ETCD_DATA_DIR}}"
  fi
  printf '%s' "
  volumes:
  - {name: srv, hostPath: {path: ${SRV}}}"
  if [[ "${name}" == etcd ]]; then
    printf '%s' "
  - {name: data, hostPath: {path: ${ETCD_DATA_DIR}}}"
  fi
}

# etcd probes its peers as it starts and waits on one that listens but does
# not serve yet (1 s for a new cluster, 10 s for a joining member), so the
# members kubeha starts together would wait on each other: this member's
# etcd starts once each member it comes after answers /version on its peer
# port (with this member's peer certificate, from its own address, which
# the certificate names). A member that starts waits up to
# ETCD_START_AFTER_BOUND_SEC in all; one that is not there at all (nothing
# answers on its address: its boot failed, or it is slower) only
# ETCD_START_AFTER_ABSENT_SEC. Only the first start waits: a member with
# data restarts as it is.
wait_for_earlier_members() {
  local url rc connected absent deadline=$((SECONDS + ${ETCD_START_AFTER_BOUND_SEC:-60}))
  if [[ -z "${ETCD_START_AFTER:-}" || -d "${ETCD_DATA_DIR}/member" ]]; then
    return
  fi
  for url in ${ETCD_START_AFTER}; do
    absent=$((SECONDS + ${ETCD_START_AFTER_ABSENT_SEC:-5}))
    while ((SECONDS < deadline)); do
      rc=0
      # HTTP/1.1: etcd's peer port closes an HTTP/2 request without a word.
      connected="$(curl --silent --http1.1 --max-time 1 --output /dev/null --write-out '%{time_connect}' --interface "${INTERNAL_IP}" \
        --cacert "${PKI_DIR}/etcd-ca.crt" --cert "${PKI_DIR}/etcd-peer.crt" --key "${PKI_DIR}/etcd-peer.key" \
        "${url}/version")" || rc=$?
      if [[ "${rc}" == 0 ]]; then
        break
      fi
      if [[ "${connected}" == 0 || "${connected}" == 0.000000 ]] && ((SECONDS >= absent)); then
        log "etcd member ${url} is not there: starting without waiting for it"
        break
      fi
      sleep 0.2
    done
    if ((SECONDS >= deadline)); then
      log "etcd members ${ETCD_START_AFTER} did not all answer within ${ETCD_START_AFTER_BOUND_SEC:-60}s: starting etcd anyway"
      return
    fi
  done
}

# restore_etcd restores etcd's data from the snapshot kube-env names
# (kubeha restore), once: the disk records the restore it applied
# (kubeha-restore-id), so later boots start from the data as it is. The
# etcd and kube-apiserver pods go first, so that nothing runs on the data
# being restored; the snapshot is read from Cloud Storage with the VM's
# service account and checked against its digest; etcdutl (of the etcd
# image, run with ctr) restores it beside the data, which is then set
# aside (never deleted) and replaced. Cut short anywhere, the next boot
# does it again.
restore_etcd() {
  [[ -n "${ETCD_RESTORE_ID:-}" ]] || return 0
  local data_root id_file tmp aside snap token
  data_root="$(dirname "${ETCD_DATA_DIR}")"
  id_file="${data_root}/kubeha-restore-id"
  if [[ -f "${id_file}" && "$(cat "${id_file}")" == "${ETCD_RESTORE_ID}" ]]; then
    return 0
  fi
  rm -f "${MANIFESTS}/etcd.yaml" "${MANIFESTS}/kube-apiserver.yaml"
  snap="${data_root}/restore.db"
  tmp="${data_root}/data.restoring"
  aside="${data_root}/data.before-restore-${ETCD_RESTORE_ID}"
  token="$(curl --fail --silent --show-error --retry 10 --retry-delay 2 -H 'Metadata-Flavor: Google' \
    "${METADATA_ROOT}/service-accounts/default/token" | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')"
  if ! curl --fail --silent --show-error --retry 5 --retry-delay 2 -o "${snap}" -H "Authorization: Bearer ${token}" "${ETCD_RESTORE_URL}"; then
    rm -f "${snap}"
    log "restore ${ETCD_RESTORE_ID}: the snapshot could not be read from ${ETCD_RESTORE_URL}: the masters' service account needs roles/storage.objectViewer on its bucket; nothing restored" >&2
    exit 1
  fi
  if [[ "$(sha256sum "${snap}" | cut -d' ' -f1)" != "${ETCD_RESTORE_SHA256}" ]]; then
    rm -f "${snap}"
    log "restore ${ETCD_RESTORE_ID}: the snapshot does not hash to ${ETCD_RESTORE_SHA256}; nothing restored" >&2
    exit 1
  fi
  rm -rf "${tmp}"
  ctr --namespace k8s.io images pull "${ETCD_IMAGE}" >/dev/null
  ctr --namespace k8s.io run --rm --net-host \
    --mount "type=bind,src=${data_root},dst=${data_root},options=rbind:rw" \
    "${ETCD_IMAGE}" "kubeha-restore-${ETCD_RESTORE_ID}" \
    /usr/local/bin/etcdutl snapshot restore "${snap}" \
    "--name=${ETCD_NAME}" \
    "--data-dir=${tmp}" \
    "--initial-cluster=${INITIAL_ETCD_CLUSTER}" \
    "--initial-cluster-token=${ETCD_RESTORE_TOKEN}" \
    "--initial-advertise-peer-urls=https://${INTERNAL_IP}:${ETCD_PEER_PORT}" \
    "--bump-revision=${ETCD_RESTORE_REVISION_BUMP}" \
    "--mark-compacted"
  if [[ -d "${aside}" ]]; then
    rm -rf "${ETCD_DATA_DIR}" # a restore cut short after the data was set aside
  elif [[ -d "${ETCD_DATA_DIR}" ]]; then
    mv "${ETCD_DATA_DIR}" "${aside}"
  fi
  mv "${tmp}" "${ETCD_DATA_DIR}"
  chmod 0700 "${ETCD_DATA_DIR}"
  echo "${ETCD_RESTORE_ID}" >"${id_file}.tmp" && mv "${id_file}.tmp" "${id_file}"
  rm -f "${snap}"
  log "restored etcd from snapshot ${ETCD_RESTORE_URL%%\?*} (restore ${ETCD_RESTORE_ID}); the data before it is in ${aside}"
}

write_etcd_manifest() {
  wait_for_earlier_members
  write_manifest etcd "$(pod etcd "${ETCD_IMAGE}" \
    "--name=${ETCD_NAME}" \
    "--data-dir=${ETCD_DATA_DIR}" \
    "--listen-peer-urls=https://${INTERNAL_IP}:${ETCD_PEER_PORT}" \
    "--initial-advertise-peer-urls=https://${INTERNAL_IP}:${ETCD_PEER_PORT}" \
    "--listen-client-urls=https://${INTERNAL_IP}:${ETCD_CLIENT_PORT}" \
    "--advertise-client-urls=https://${INTERNAL_IP}:${ETCD_CLIENT_PORT}" \
    "--initial-cluster=${INITIAL_ETCD_CLUSTER}" \
    "--initial-cluster-state=${INITIAL_ETCD_CLUSTER_STATE}" \
    "--max-learners=${ETCD_MAX_LEARNERS}" \
    "--client-cert-auth=true" \
    "--trusted-ca-file=${PKI_DIR}/etcd-ca.crt" \
    "--cert-file=${PKI_DIR}/etcd-server.crt" \
    "--key-file=${PKI_DIR}/etcd-server.key" \
    "--peer-client-cert-auth=true" \
    "--peer-trusted-ca-file=${PKI_DIR}/etcd-ca.crt" \
    "--peer-cert-file=${PKI_DIR}/etcd-peer.crt" \
    "--peer-key-file=${PKI_DIR}/etcd-peer.key")"
}

# Anonymous requests are allowed on the health paths (what a kubelet's
# probe asks without credentials) and kube-public/cluster-info (the CA and
# address a node discovers the cluster by, signed with each bootstrap
# token); every other path needs them.
# The load balancer's health check goes through kube-apiserver-healthcheck,
# which authenticates with its own client certificate.
write_authentication_config() {
  write_secret "${SRV}/authentication-config.yaml" "apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /livez
  - path: /readyz
  - path: /healthz
  - path: /api/v1/namespaces/kube-public/configmaps/cluster-info"
}

# kube-apiserver-healthcheck (kOps' sidecar): the load balancer's legacy
# health check speaks plain HTTP only, so this answers it on
# HEALTHCHECK_PORT with the local API server's /readyz, asked over HTTPS
# on 127.0.0.1 with a client certificate.
write_healthcheck_manifest() {
  write_manifest kube-apiserver-healthcheck "$(pod kube-apiserver-healthcheck "${KUBE_APISERVER_HEALTHCHECK_IMAGE}" \
    "--ca-cert=${PKI_DIR}/ca.crt" \
    "--client-cert=${PKI_DIR}/kube-apiserver-healthcheck.crt" \
    "--client-key=${PKI_DIR}/kube-apiserver-healthcheck.key")"
}

# kube-apiserver with the flags of current releases. Reads are linearizable
# by default since Kubernetes 1.9, which is what kube-up's
# ENABLE_ETCD_QUORUM_READ asked for; there is no flag for it any more.
write_apiserver_manifest() {
  write_authentication_config
  write_manifest kube-apiserver "$(pod kube-apiserver "${KUBE_APISERVER_IMAGE}" \
    "--advertise-address=${MASTER_ADVERTISE_ADDRESS}" \
    "--bind-address=0.0.0.0" \
    "--secure-port=443" \
    "--etcd-servers=https://${INTERNAL_IP}:${ETCD_CLIENT_PORT}" \
    "--etcd-cafile=${PKI_DIR}/etcd-ca.crt" \
    "--etcd-certfile=${PKI_DIR}/apiserver-etcd-client.crt" \
    "--etcd-keyfile=${PKI_DIR}/apiserver-etcd-client.key" \
    "--tls-cert-file=${PKI_DIR}/apiserver.crt" \
    "--tls-private-key-file=${PKI_DIR}/apiserver.key" \
    "--client-ca-file=${PKI_DIR}/ca.crt" \
    "--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}" \
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local" \
    "--service-account-key-file=${PKI_DIR}/sa.pub" \
    "--service-account-signing-key-file=${PKI_DIR}/sa.key" \
    "--authorization-mode=Node,RBAC" \
    "--enable-bootstrap-token-auth=true" \
    "--authentication-config=${SRV}/authentication-config.yaml" \
    "--enable-admission-plugins=NodeRestriction" \
    "--allow-privileged=true" \
    "--profiling=false")"
}

write_controller_manager_manifest() {
  write_kubeconfig controller-manager system:kube-controller-manager
  write_manifest kube-controller-manager "$(pod kube-controller-manager "${KUBE_CONTROLLER_MANAGER_IMAGE}" \
    "--kubeconfig=${SRV}/controller-manager.kubeconfig" \
    "--authentication-kubeconfig=${SRV}/controller-manager.kubeconfig" \
    "--authorization-kubeconfig=${SRV}/controller-manager.kubeconfig" \
    "--bind-address=${INTERNAL_IP}" \
    "--leader-elect=true" \
    "--use-service-account-credentials=true" \
    "--service-account-private-key-file=${PKI_DIR}/sa.key" \
    "--root-ca-file=${PKI_DIR}/ca.crt" \
    "--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}" \
    "--cluster-signing-cert-file=${PKI_DIR}/ca.crt" \
    "--cluster-signing-key-file=${PKI_DIR}/ca.key" \
    "--controllers=*,bootstrapsigner,tokencleaner" \
    "--profiling=false")"
}

write_scheduler_manifest() {
  write_kubeconfig scheduler system:kube-scheduler
  write_manifest kube-scheduler "$(pod kube-scheduler "${KUBE_SCHEDULER_IMAGE}" \
    "--kubeconfig=${SRV}/scheduler.kubeconfig" \
    "--authentication-kubeconfig=${SRV}/scheduler.kubeconfig" \
    "--authorization-kubeconfig=${SRV}/scheduler.kubeconfig" \
    "--bind-address=${INTERNAL_IP}" \
    "--leader-elect=true" \
    "--profiling=false")"
}

# write_addons puts the add-ons of kubeha-addons (a gzipped tar) in
# ADDONS, replacing the directory whole when they changed, so that a file
# removed from the add-ons is gone from it (and the add-on manager prunes
# what it held).
write_addons() {
  local archive
  archive="$(metadata kubeha-addons)"
  if [[ -f "${SRV}/addons.archive" ]] && [[ "$(cat "${SRV}/addons.archive")" == "${archive}" ]] && [[ -d "${ADDONS}" ]]; then
    return
  fi
  rm -rf "${ADDONS}.new"
  mkdir -p "${ADDONS}.new"
  base64 -d <<<"${archive}" | tar -xz -C "${ADDONS}.new"
  rm -rf "${ADDONS}.old"
  if [[ -d "${ADDONS}" ]]; then
    mv "${ADDONS}" "${ADDONS}.old"
  fi
  mv "${ADDONS}.new" "${ADDONS}"
  rm -rf "${ADDONS}.old"
  printf '%s' "${archive}" >"${SRV}/addons.archive"
}

# The add-on manager (kube-up's kube-addons.sh with its kubectl) applies
# ADDONS every ADDON_CHECK_INTERVAL_SEC: Reconcile objects are kept as the
# files say (pruned when their file is gone), EnsureExists ones only
# created. Every master runs one; only the one on the master whose
# kube-controller-manager holds the leader lease acts.
write_addon_manager_manifest() {
  write_kubeconfig addon-manager system:addon-manager
  write_manifest kube-addon-manager "apiVersion: v1
kind: Pod
metadata:
  name: kube-addon-manager
  namespace: kube-system
  labels: {component: kube-addon-manager}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  containers:
  - name: kube-addon-manager
    image: ${KUBE_ADDON_MANAGER_IMAGE}
    env:
    - {name: KUBECTL_OPTS, value: '--kubeconfig=${SRV}/addon-manager.kubeconfig'}
    - {name: ADDON_PATH, value: '${ADDONS}'}
    - {name: TEST_ADDON_CHECK_INTERVAL_SEC, value: '${ADDON_CHECK_INTERVAL_SEC}'}
    resources:
      requests: {cpu: 5m, memory: 50Mi}
    volumeMounts:
    - {name: addons, mountPath: ${ROOT}/etc/kubernetes/, readOnly: true}
    - {name: srv, mountPath: ${SRV}, readOnly: true}
  volumes:
  - {name: addons, hostPath: {path: ${ROOT}/etc/kubernetes/}}
  - {name: srv, hostPath: {path: ${SRV}}}"
}

# The add-ons follow kubeha-addons while the master runs: kubeha sets it
# again when spec.addons changes (an update-addons step, which also writes
# the add-ons' digest in kubeha-config), and this service (this script,
# installed as /home/kubernetes/bin/kubeha-startup, run with sync-addons)
# writes them, and the add-on manager's pod when its interval changed. It
# waits on the metadata server for kubeha-config to change
# (wait_for_change with its ETag, at most ADDON_SYNC_TIMEOUT_SEC), as GCE's
# guest agents do, so it costs nothing while nothing changes.
readonly ADDON_SYNC_TIMEOUT_SEC="${ADDON_SYNC_TIMEOUT_SEC:-300}"

# metadata_etag KEY [ETAG] prints the ETag of attribute KEY, once it is
# not ETAG (at once without one).
metadata_etag() {
  local query=""
  if [[ -n "${2:-}" ]]; then
    query="?wait_for_change=true&last_etag=$2&timeout_sec=${ADDON_SYNC_TIMEOUT_SEC}"
  fi
  curl --fail --silent --show-error --max-time "$((ADDON_SYNC_TIMEOUT_SEC + 30))" -o /dev/null -D - \
    -H 'Metadata-Flavor: Google' "${METADATA}/$1${query}" | sed -n 's/^[Ee][Tt][Aa][Gg]: *\([^[:space:]]*\).*/\1/p'
}

sync_addons() {
  local etag
  etag="$(metadata_etag kubeha-config)"
  while true; do
    load_kube_env
    write_addons
    write_addon_manager_manifest
    if ! etag="$(metadata_etag kubeha-config "${etag}")" || [[ -z "${etag}" ]]; then
      sleep 10 # the metadata server did not answer: ask again
    fi
  done
}

# start_unit NAME CHANGED starts systemd unit NAME.service, or restarts it
# when CHANGED is 0 (its unit file or what it runs was rewritten).
start_unit() {
  if [[ "$2" == 0 ]]; then
    systemctl daemon-reload
    systemctl enable "$1.service"
    systemctl restart "$1.service"
  else
    systemctl enable --now "$1.service"
  fi
}

write_addon_sync_unit() {
  local changed=1
  mkdir -p "${ROOT}/home/kubernetes/bin"
  if [[ ! -f "${ROOT}/home/kubernetes/bin/kubeha-startup" ]] || [[ "$(cat "${BASH_SOURCE[0]}")" != "$(cat "${ROOT}/home/kubernetes/bin/kubeha-startup")" ]]; then
    install -m 0755 "${BASH_SOURCE[0]}" "${ROOT}/home/kubernetes/bin/kubeha-startup"
    changed=0
  fi
  write_if_changed "${ROOT}/etc/systemd/system/kubeha-addons.service" "[Unit]
Description=kubeha: keep the add-on directory as instance metadata kubeha-addons says
After=network-online.target

[Service]
ExecStart=/home/kubernetes/bin/kubeha-startup sync-addons
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target" && changed=0
  start_unit kubeha-addons "${changed}"
}

main() {
  if [[ "${1:-}" == sync-addons ]]; then
    sync_addons
  fi
  load_kube_env
  install_kubelet
  write_certificates
  mount_data_disk
  restore_etcd
  open_firewall
  write_etcd_manifest
  write_apiserver_manifest
  write_controller_manager_manifest
  write_scheduler_manifest
  write_healthcheck_manifest
  write_addons
  write_addon_manager_manifest
  write_addon_sync_unit
  configure_containerd
  write_kubelet_unit
  log "${KUBERNETES_MASTER_NAME} wrote the static pods of Kubernetes ${KUBERNETES_VERSION} and etcd ${ETCD_VERSION} (${INITIAL_ETCD_CLUSTER_STATE} member ${ETCD_NAME})"
}

# Sourcing the script (as kubeha's tests do) defines the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
