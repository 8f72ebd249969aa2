package sim

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// listenerOn names the process that listens on a TCP port of ip on this
// machine ("" when none does, or where /proc does not say): an address a
// process holds is not handed out, whatever emulator (or none) runs it.
func listenerOn(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil || !addr.Is4() {
		return ""
	}
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return ""
	}
	a := addr.As4()
	// /proc/net/tcp writes an IPv4 address as the hex of its 32 bits in
	// host (little-endian) order.
	want := strings.ToUpper(hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, binary.BigEndian.Uint32(a[:]))))
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		local, port, _ := strings.Cut(f[1], ":")
		if local != want {
			continue
		}
		p, _ := hex.DecodeString(port)
		who := "a process"
		if pid := socketOwner(f[9]); pid != "" {
			cmd, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
			who = fmt.Sprintf("process %s (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")))
		}
		return fmt.Sprintf("%s, listening on %s:%d", who, ip, int(p[0])<<8|int(p[1]))
	}
	return ""
}

// socketOwner is the PID whose open files include the socket inode ("" if
// none of the processes this one may look into has it).
func socketOwner(inode string) string {
	target := "socket:[" + inode + "]"
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); l == target {
				return p.Name()
			}
		}
	}
	return ""
}
