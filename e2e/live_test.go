package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal of cols columns: the controller, read by
// the test, and the terminal, given to kubeha as its standard output.
func openPTY(t testing.TB, cols uint16) (controller, tty *os.File) {
	t.Helper()
	controller, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals on this machine (%v): the live view is covered by the cli package's tests", err)
	}
	fd := int(controller.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: cols}); err != nil {
		t.Fatalf("set pty size: %v", err)
	}
	t.Cleanup(func() { controller.Close(); tty.Close() })
	return controller, tty
}

// onTerminal runs kubeha with its standard output on a terminal and env
// as its whole environment, and returns what the terminal showed.
func onTerminal(t testing.TB, env []string, args ...string) (string, string) {
	t.Helper()
	controller, tty := openPTY(t, 100)
	cmd := exec.Command(kubeha, args...)
	cmd.Dir = repoRoot
	cmd.Env = env
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = tty, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds it; reads end when the child exits
	var out bytes.Buffer
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(&out, controller)
		read <- err
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubeha %v: %v\n%s", args, err, errOut.String())
	}
	if err := <-read; err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatalf("read the terminal: %v", err)
	}
	return out.String(), errOut.String()
}

func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "CI", "NO_COLOR", "TERM":
		default:
			env = append(env, kv)
		}
	}
	return env
}

// TestApplyLiveView: on a terminal, apply redraws a block of running steps
// in place and leaves one line per finished step; with NO_COLOR (and in
// CI) the same terminal gets plain lines and no escape sequences.
func TestApplyLiveView(t *testing.T) {
	c := newCluster(t, "live")
	c.write(1, false)
	args := []string{"apply", "-f", c.spec, "--auto-approve", "--gce-endpoint", c.endpoint}

	out, _ := onTerminal(t, append(baseEnv(), "TERM=xterm-256color"), args...)
	for _, want := range []string{
		"\x1b[J",                 // the block is erased before each redraw
		"\x1b[32m✓\x1b[0m [1/",   // a finished step
		"etcd fault tolerance 0", // the fault tolerance after a step
		" running · ",            // the live block's totals
		"Apply complete: ",       // the end
	} {
		if !strings.Contains(out, want) {
			t.Errorf("live view lacks %q:\n%q", want, out)
		}
	}
	if !strings.Contains(out, "\x1b[") || !strings.Contains(out, "A\x1b[J") {
		t.Errorf("live view never moved the cursor up to redraw:\n%q", out)
	}
	// Every step finished shows once, as a line of its own.
	if n := strings.Count(out, "✓"); n < 5 {
		t.Errorf("%d finished lines on the terminal, want one per step:\n%s", n, out)
	}
	c.converged(1)

	for i, env := range [][]string{{"NO_COLOR=1", "TERM=xterm-256color"}, {"CI=true", "TERM=xterm-256color"}, {"TERM=dumb"}} {
		n := []int{3, 1, 3}[i]
		c.write(n, false)
		out, _ = onTerminal(t, append(baseEnv(), env...), args...)
		if strings.Contains(out, "\x1b") {
			t.Errorf("%v: escape sequences on the terminal:\n%q", env, out)
		}
		if !strings.Contains(out, " done in ") || !strings.Contains(out, "Apply complete: ") {
			t.Errorf("%v: no plain progress lines:\n%s", env, out)
		}
		c.converged(n)
	}
}
