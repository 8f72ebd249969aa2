package kubelet

import (
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// setHostname is the shell that gives a container its machine's host
// name inside its own UTS namespace, then becomes the container (exec: the
// same process, so signals and Pdeathsig reach the binary).
const setHostname = `printf '%s' "$0" >/proc/sys/kernel/hostname && exec "$@"`

// hostnameMode is how containers get their machine's host name here:
// "uts" (a UTS namespace, as root), "user+uts" (a UTS namespace inside a
// user namespace, for an ordinary user where the kernel allows it) or ""
// (neither can be made: every container reports this host's name).
var hostnameMode = sync.OnceValue(func() string {
	for _, mode := range []string{"uts", "user+uts"} {
		cmd := exec.Command("/bin/sh", "-c", setHostname, "kubeha-probe", "/bin/true")
		cmd.SysProcAttr = namespaceAttr(mode)
		if cmd.Run() == nil {
			return mode
		}
	}
	return ""
})

// HostnameIsolation says how the emulated machines' processes get their
// own host names: "uts", "user+uts", or "" when they share this host's.
func HostnameIsolation() string { return hostnameMode() }

func namespaceAttr(mode string) *syscall.SysProcAttr {
	a := containerProcAttr()
	switch mode {
	case "uts":
		a.Cloneflags = syscall.CLONE_NEWUTS
	case "user+uts":
		a.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWUTS
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	return a
}

// Command is a process of an emulated machine: bin with args, whose host
// name is hostname where a UTS namespace can be made ("" keeps this
// host's), in its own process group, killed with the emulator.
func Command(hostname, bin string, args ...string) *exec.Cmd {
	mode := ""
	if hostname != "" {
		mode = hostnameMode()
	}
	if mode == "" {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = containerProcAttr()
		return cmd
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", setHostname, hostname, bin}, args...)...)
	cmd.SysProcAttr = namespaceAttr(mode)
	return cmd
}
