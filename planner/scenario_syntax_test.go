package planner

// scenario is one testdata file: comment lines (#), a spec line, lines that
// describe what exists, then "----" and the expected plan (or "error: ...").
// An unknown line, key, flag or value fails the test:
//
//	spec replicas=N zones=b,c,d [remediation=on] [after=5m] [machineType=T] [image=I] [quorumRead=true|false] [replace=N,...] [region=R] [access=CIDR,...] [addons=DIGEST] [replaceBy=disk|member] [version=V]
//	instance NAME ZONE [status=S] [restore=ID] [config=none|machineType:T|image:I|quorumRead:B|kubernetesVersion:V|diskSizeGb:N|diskType:T] [addons=DIGEST|none]
//	         [initial=NAME,...]   (it boots etcd state new with that static initial cluster, each member on its address)
//	         [joined=NAME,...]    (it boots etcd state existing with that initial cluster)
//	         [certs=expiring|wrong-ip|old-static-ip|keys-in-metadata|no-node-credentials] [labels=none] [nat=static|ephemeral|none] [pool] [nodisk] [noaddr]
//	member NAME voter|learner [unhealthy] [leader] [unstarted] [for=10m] [id=HEX] [peer=IP] [version=ETCD]   (NAME without an instance is an orphan)
//	disk NAME ZONE | address NAME [ip=IP] | static-ip [missing] | firewalls missing|etcd-drift|https-missing
//	healthcheck [probes=8080] | pool [dangling=NAME] | rule [ip=IP] | etcd unreachable | other-region R | etcd-client-firewall
//	destroy [no-snapshot] [final-snapshot=FILE]   (plan the cluster's destruction instead)
//	newest-snapshot   (the cluster's newest snapshot in its backups directory, which refusals name)
//	restore [force] [no-snapshot] [other-snapshot] [rev=N]   (plan a restore from snap.db instead)
//	nodes [masters=NAME,...]   (the masters' Nodes in the Kubernetes API)
//	identity [missing] [named] [secrets=NAME,...]   (the masters' service account, kubeha's or named in the spec, and key secrets)
//	network NAME [missing] [custom] [subnetwork=missing|ours|other-network]   (the spec names NAME and, with subnetwork=, "masters")
var scenarioSyntax = map[string]struct {
	args        int
	keys, flags []string
	values      map[string][]string // the values a key may take ("" any)
}{
	"spec": {keys: []string{"replicas", "zones", "remediation", "after", "machineType", "image", "quorumRead", "replace", "region", "access", "addons", "replaceBy", "version"},
		values: map[string][]string{"remediation": {"on", "off"}, "quorumRead": {"true", "false"}}},
	"instance": {args: 2, keys: []string{"status", "config", "certs", "labels", "nat", "addons", "initial", "joined", "restore"}, flags: []string{"pool", "nodisk", "noaddr", "detached"},
		values: map[string][]string{"certs": {"expiring", "wrong-ip", "old-static-ip", "keys-in-metadata", "no-node-credentials"}, "labels": {"none"}, "nat": {"static", "ephemeral", "none"}}},
	"member":               {args: 2, keys: []string{"for", "id", "peer", "version"}, flags: []string{"unhealthy", "leader", "unstarted"}},
	"disk":                 {args: 2},
	"address":              {args: 1, keys: []string{"ip"}},
	"static-ip":            {flags: []string{"missing"}},
	"firewalls":            {args: 1},
	"healthcheck":          {keys: []string{"probes"}, values: map[string][]string{"probes": {"8080"}}},
	"pool":                 {keys: []string{"dangling"}},
	"rule":                 {keys: []string{"ip"}},
	"etcd":                 {args: 1},
	"other-region":         {args: 1},
	"etcd-client-firewall": {},
	"destroy":              {keys: []string{"final-snapshot", "restore-bucket"}, flags: []string{"no-snapshot"}},
	"newest-snapshot":      {},
	"restore":              {keys: []string{"rev"}, flags: []string{"force", "no-snapshot", "other-snapshot"}},
	"identity":             {keys: []string{"secrets"}, flags: []string{"missing", "named"}},
	"nodes":                {keys: []string{"masters"}},
	"network": {args: 1, keys: []string{"subnetwork"}, flags: []string{"missing", "custom"},
		values: map[string][]string{"subnetwork": {"missing", "ours", "other-network"}}},
}
