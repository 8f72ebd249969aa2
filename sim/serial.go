package sim

import (
	"strconv"
	"strings"

	compute "google.golang.org/api/compute/v1"
)

// The serial console: what a VM's guest writes to serial port 1, as GCE's
// instances.getSerialPortOutput returns it. Google's guest agent writes
// the outcome of the startup script there ("startup-script exit status N"),
// which is how an operator, or kubeha, tells a VM whose boot failed from
// one still booting.

// serialLine appends a line to an instance's serial port 1.
func (s *Server) serialLineLocked(key, line string) {
	s.serial[key] = append(s.serial[key], line+"\n"...)
}

// getSerialPortOutput serves port 1 from byte start (GCE keeps the last
// 1 MB; the emulator keeps all of it while the instance exists).
func (s *Server) getSerialPortOutput(r *request) (any, error) {
	key := instKey(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.w.Instances[key]; !ok {
		return nil, errNotFound(key)
	}
	if port := r.URL.Query().Get("port"); port != "" && port != "1" {
		return &compute.SerialPortOutput{Kind: "compute#serialPortOutput", Start: 0, Next: 0, SelfLink: link(key) + "/serialPort?port=" + port}, nil
	}
	out := s.serial[key]
	start, _ := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64)
	start = min(max(start, 0), int64(len(out)))
	return &compute.SerialPortOutput{Kind: "compute#serialPortOutput", Contents: string(out[start:]), Start: start, Next: int64(len(out)),
		SelfLink: link(key) + "/serialPort"}, nil
}

// startupFailed is the guest agent's line for a startup script that failed.
func startupFailed(status int, why string) string {
	return "google_metadata_script_runner: startup-script: " + strings.TrimSpace(why) + "\ngoogle_metadata_script_runner: startup-script exit status " + strconv.Itoa(status)
}
