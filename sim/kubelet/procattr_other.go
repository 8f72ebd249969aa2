//go:build !linux

package kubelet

import "syscall"

// containerProcAttr puts a container apart from the emulator's signals (its
// own process group). Only Linux can have it killed with the emulator.
func containerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
