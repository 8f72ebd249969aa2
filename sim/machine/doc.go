// Package machine is an emulated master VM: a root directory of its own,
// its metadata served as GCE's metadata server serves it, the real startup
// script run with bash at every boot, and the stand-ins for what a VM's own
// software does that cannot run here: init (systemctl), the disk tools
// (blkid, mkfs.ext4, mount, mountpoint), the host firewall (iptables) and
// the kubelet (package kubelet, which runs the static pods as processes of
// the real binaries). Each stand-in records what it was asked in
// <root>/var/log/stand-ins.log.
package machine
