//go:build !linux

package kubelet

import "os/exec"

// HostnameIsolation says how the emulated machines' processes get their
// own host names: only Linux has UTS namespaces, so they share this host's.
func HostnameIsolation() string { return "" }

// Command is a process of an emulated machine: bin with args, in its own
// process group. Off Linux it keeps this host's name.
func Command(hostname, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = containerProcAttr()
	return cmd
}
