package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/golden"
	"github.com/kubeha/kubeha/spec"
	"github.com/spf13/cobra"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestValidateExamples(t *testing.T) {
	for _, f := range []string{"quickstart.yaml", "ha-3.yaml", "ha-5.yaml"} {
		path := filepath.Join("..", "..", "..", "examples", f)
		code, out, _ := run(t, "validate", "-f", path)
		if code != ExitOK || !strings.Contains(out, path+": valid: cluster ") {
			t.Errorf("validate %s: exit %d, stdout %q", f, code, out)
		}
	}
}

func TestValidateInvalidExamples(t *testing.T) {
	files := golden.Files(t, "../../../examples/invalid/*.yaml", 12)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		code, out, errOut := run(t, "validate", "-f", path)
		if code != ExitError || out != "" {
			t.Errorf("%s: exit %d, stdout %q", path, code, out)
		}
		for _, line := range strings.Split(string(data), "\n") {
			want, ok := strings.CutPrefix(line, "# want: ")
			if !ok {
				continue
			}
			if !strings.Contains(errOut, want) {
				t.Errorf("%s: stderr %q lacks %q", path, errOut, want)
			}
		}
		if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine") {
			t.Errorf("%s: %s", path, errOut)
		}
	}
}

func TestValidateWarningsGoToStderr(t *testing.T) {
	code, out, errOut := run(t, "validate", "-f", "../../../examples/ha-5.yaml")
	if code != ExitOK || !strings.Contains(out, "3 warning(s)") || strings.Count(errOut, "warning: ") != 3 {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"validate"}, `required flag(s) "file" not set`},
		{[]string{"validate", "-f", "x.yaml", "extra"}, `unknown command "extra"`},
		{[]string{"nosuchcommand"}, `unknown command "nosuchcommand"`},
		{[]string{"validate", "-f", "/nonexistent/cluster.yaml"}, "no such file"},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, tt.args...)
		if code != ExitError || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tt.args, code, errOut, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != ExitOK || !strings.HasPrefix(out, "kubeha ") {
		t.Errorf("exit %d, %q", code, out)
	}
}

// TestEveryCommandHasHelp: every command's help file gives a usage line
// that starts with the command's name, a summary and (but for the parent
// commands) a description; and no help file is left without a command.
func TestEveryCommandHasHelp(t *testing.T) {
	used := map[string]bool{}
	var walk func(cmd *cobra.Command, file string)
	walk = func(cmd *cobra.Command, file string) {
		used[file+".txt"] = true
		if !strings.HasPrefix(cmd.Use, cmd.Name()) || cmd.Name() == "" || strings.Contains(cmd.Use, "\n") {
			t.Errorf("help/%s.txt: usage line %q", file, cmd.Use)
		}
		if cmd.Short == "" || strings.Contains(cmd.Short, "\n") {
			t.Errorf("help/%s.txt: summary %q: want one line", file, cmd.Short)
		}
		if cmd.Long == "" && cmd.Name() != "sim" && cmd.Name() != "version" {
			t.Errorf("help/%s.txt: no description after the blank line", file)
		}
		for _, sub := range cmd.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			name := sub.Name()
			if cmd.HasParent() {
				name = cmd.Name() + "-" + name
			}
			walk(sub, name)
		}
	}
	walk(newRootCommand(IOStreams{}), "kubeha")
	files, err := helpFiles.ReadDir("help")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !used[f.Name()] {
			t.Errorf("help/%s: no command reads it", f.Name())
		}
	}
	if len(used) < 9 {
		t.Errorf("walked %d commands", len(used))
	}
}

// TestInterruptedDestroySnapshot: the final snapshot an interrupted destroy
// left is the newest of this cluster's, never another cluster's whose name
// ends like it, nor an ordinary snapshot.
func TestInterruptedDestroySnapshot(t *testing.T) {
	dir := t.TempDir()
	c := &spec.Cluster{Metadata: spec.Metadata{Name: "prod"}, Spec: spec.ClusterSpec{PKI: spec.PKI{Dir: filepath.Join(dir, "pki")}}}
	if got, err := interruptedDestroySnapshot(c); err != nil || got != "" {
		t.Fatalf("no backups directory: %q, %v", got, err)
	}
	backups := filepath.Join(dir, "backups")
	os.MkdirAll(backups, 0o700)
	for _, name := range []string{
		"20261127T090000.000Z-prod-before-destroy-r7.db",
		"20261127T100000.000Z-prod-before-destroy-r9.db",
		"20261127T110000.000Z-x-prod-before-destroy-r3.db",
		"20261127T120000.000Z-prod-before-remove-prod-master-r9.db",
	} {
		os.WriteFile(filepath.Join(backups, name), []byte("snap"), 0o600)
	}
	got, err := interruptedDestroySnapshot(c)
	if err != nil || got != filepath.Join(backups, "20261127T100000.000Z-prod-before-destroy-r9.db") {
		t.Errorf("got %q, %v", got, err)
	}
}
