#!/usr/bin/env bash
# make demo: a tour of kubeha on the emulator, printing plans and status:
# 1 master -> 3 -> crash a member -> replace it -> 5 -> 3 -> 1.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
kubeha="${work}/kubeha"
trap 'kill "${sim_pid:-0}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "${work}"' EXIT

go build -o "${kubeha}" ./cmd/kubeha
"${kubeha}" sim serve --listen 127.0.0.1:0 --dir "${work}/sim" >"${work}/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do
  url="$(sed -n 's/^sim: listening on //p' "${work}/sim.log")"
  [[ -n "${url}" ]] && break
  sleep 0.1
done
[[ -n "${url:-}" ]] || { echo "the emulator did not start:"; cat "${work}/sim.log"; exit 1; }
export KUBEHA_GCE_ENDPOINT="${url}"
spec="${work}/cluster.yaml"

banner() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

write_spec() {
  cat >"${spec}" <<SPEC
apiVersion: kubeha.io/v1alpha1
kind: Cluster
metadata:
  name: demo
spec:
  gce:
    project: kubeha-demo
    region: europe-west1
  masters:
    replicas: $1
    zones: [europe-west1-b, europe-west1-c, europe-west1-d]
  multiZone: true
SPEC
}

scale() {
  banner "replicas: $1"
  write_spec "$1"
  "${kubeha}" plan -f "${spec}" || true
  "${kubeha}" apply -f "${spec}" --auto-approve >"${work}/apply.log" || { cat "${work}/apply.log"; exit 1; }
  tail -n 1 "${work}/apply.log"
  "${kubeha}" status -f "${spec}"
}

scale 1
scale 3

victim="$("${kubeha}" status -f "${spec}" -o json | sed -n 's/.*"name": "\(demo-master-[a-z0-9]*\)".*/\1/p' | head -n 1)"
zone="$("${kubeha}" status -f "${spec}" -o json | grep -A1 "\"name\": \"${victim}\"" | sed -n 's/.*"zone": "\(.*\)".*/\1/p')"
banner "crash the etcd member of ${victim} (${zone}); its VM keeps running"
curl -fsS -X POST "${url}/sim/v1/projects/kubeha-demo/zones/${zone}/instances/${victim}/crash" >/dev/null
"${kubeha}" status -f "${spec}"

banner "replace ${victim} in its zone"
"${kubeha}" plan -f "${spec}" --replace "${victim}" || true
"${kubeha}" apply -f "${spec}" --auto-approve --replace "${victim}" >"${work}/apply.log" || { cat "${work}/apply.log"; exit 1; }
tail -n 1 "${work}/apply.log"
"${kubeha}" status -f "${spec}"

scale 5
scale 3
scale 1
banner "the tour is over: one master again, with the static IP on it"
