package kubelet

import "syscall"

// containerProcAttr puts a container apart from the emulator's signals (its
// own process group) and has it killed with the emulator should that die
// without stopping its machines (kill -9): a container outliving its
// machine would hold the machine's ports.
func containerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
