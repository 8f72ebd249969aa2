package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kubeha is the path of the binary built for this test run.
var kubeha string

// repoRoot is the repository root, where examples/ lives.
var repoRoot string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kubeha-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	repoRoot, err = filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kubeha = filepath.Join(dir, "kubeha")
	// --sim runs etcd-only masters in these tests; the tests of the whole
	// control plane ask for it.
	os.Setenv("KUBEHA_SIM_CONTROL_PLANE", "etcd")
	// Built without -race: the binary also serves the emulator, whose etcd
	// members must not be slowed down; the packages run with -race anyway.
	build := exec.Command("go", "build", "-o", kubeha, "./cmd/kubeha")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build kubeha: %v\n%s", err, out)
		return 1
	}
	// Most of these tests wait on the emulator's latencies and etcd's
	// elections, not on the cores: three run at once unless -parallel says
	// otherwise (the clusters of the whole control plane take turns, two
	// at a time: see heavySlots).
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "3")
	}
	return m.Run()
}

type result struct {
	code           int
	stdout, stderr string
}

// runKubeha runs the binary in the repository root with stdin as its
// standard input and the test's environment (set variables with t.Setenv).
func runKubeha(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(kubeha, args...)
	cmd.Dir = repoRoot
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run kubeha %v: %v", args, err)
	}
	return result{code, out.String(), errOut.String()}
}

func execCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	return cmd
}
