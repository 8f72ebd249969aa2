package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	files, _ := filepath.Glob("../../../examples/invalid/*.yaml")
	if len(files) < 12 {
		t.Fatalf("found %d invalid examples", len(files))
	}
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
