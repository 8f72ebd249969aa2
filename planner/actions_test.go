package planner

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryActionIsComplete: every Action constant is in the table of
// actions, has a case in the property model, and is planned by at least
// one scenario. (The executor's table is checked in its own package.)
// Forgetting one used to fail silently: a step shown as "~" and left out
// of the summary.
func TestEveryActionIsComplete(t *testing.T) {
	fset := token.NewFileSet()
	consts := map[Action]string{} // value -> constant name
	f, err := parser.ParseFile(fset, "types.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Action" {
				continue
			}
			lit := vs.Values[0].(*ast.BasicLit)
			consts[Action(strings.Trim(lit.Value, `"`))] = vs.Names[0].Name
		}
	}
	if len(consts) < 20 {
		t.Fatalf("found only %d Action constants in types.go", len(consts))
	}
	modeled := modelCases(t)
	var scenarios strings.Builder
	files, _ := filepath.Glob("testdata/*.txt")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		_, want, _ := strings.Cut(string(data), "\n----\n")
		scenarios.WriteString(want)
	}
	for a, name := range consts {
		if !a.Known() {
			t.Errorf("%s (%s) is not in the table of actions (planner/types.go)", name, a)
		}
		if !modeled[name] {
			t.Errorf("%s (%s) has no case in the property model (planner/property_test.go)", name, a)
		}
		if !strings.Contains(scenarios.String(), " "+string(a)+" ") {
			t.Errorf("%s (%s) is planned by no scenario in planner/testdata", name, a)
		}
	}
	if len(Actions()) != len(consts) {
		t.Errorf("the table has %d actions, types.go declares %d", len(Actions()), len(consts))
	}
}

// modelCases are the actions the property model's apply has a case for.
func modelCases(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "property_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "apply" || fn.Recv == nil {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if id, ok := e.(*ast.Ident); ok {
						out[id.Name] = true
					}
				}
			}
			return true
		})
	}
	return out
}

// TestPlannerDependsOnNoClient: the planner is a pure function of the spec
// and the observed model, as raft's core knows no transport: none of its
// dependencies is a client of GCE, etcd or HTTP.
func TestPlannerDependsOnNoClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "etcd/client") || strings.Contains(dep, "api/compute") || dep == "net/http" || strings.Contains(dep, "grpc") {
			t.Errorf("the planner depends on %s", dep)
		}
	}
}
