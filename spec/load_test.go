package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/golden"
)

// wantLines reads the "# want: ..." lines of an invalid example.
func wantLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(data), "\n") {
		if w, ok := strings.CutPrefix(line, "# want: "); ok {
			want = append(want, w)
		}
	}
	return want
}

func TestInvalidExamples(t *testing.T) {
	files := golden.Files(t, "../examples/invalid/*.yaml", 12)
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want := wantLines(t, path)
			if len(want) == 0 {
				t.Fatalf("%s has no '# want:' line", path)
			}
			c, _, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted an invalid spec: %+v", c)
			}
			var serr *Error
			if !errors.As(err, &serr) {
				t.Fatalf("error is %T, want *spec.Error: %v", err, err)
			}
			var got []string
			for _, p := range serr.Problems {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("problems:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, path+":") {
					t.Errorf("error line %q does not start with the file name", line)
				}
			}
		})
	}
}

func TestValidExamples(t *testing.T) {
	tests := []struct {
		file     string
		replicas int
		warnings []string
	}{
		{"quickstart.yaml", 1, nil},
		{"ha-3.yaml", 3, nil},
		{"ha-5.yaml", 5, []string{
			"16: spec.masters.zones: us-central1-a holds 2 of 5 masters: a failure of that zone takes 2 at once",
			"16: spec.masters.zones: us-central1-b holds 2 of 5 masters: a failure of that zone takes 2 at once",
			"15: spec.masters.replicas: 5 masters cannot be spread evenly over 3 zones: the first zones hold more (us-central1-a=2, us-central1-b=2, us-central1-c=1)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("..", "examples", tt.file)
			c, warnings, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.Spec.Masters.Replicas != tt.replicas {
				t.Errorf("replicas = %d, want %d", c.Spec.Masters.Replicas, tt.replicas)
			}
			var got []string
			for _, w := range warnings {
				got = append(got, w.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.warnings, "\n") {
				t.Errorf("warnings:\n got: %q\nwant: %q", got, tt.warnings)
			}
			if c.Source != path || c.PKIDir() != filepath.Join("..", "examples", "pki") {
				t.Errorf("Source = %q, PKIDir = %q", c.Source, c.PKIDir())
			}
		})
	}
}

const minimal = `apiVersion: kubeha.io/v1alpha1
kind: Cluster
metadata:
  name: prod
spec:
  gce:
    project: my-project
    region: europe-west1
  masters:
    replicas: %REPLICAS%
    zones: [%ZONES%]
  multiZone: %MZ%
`

func minimalSpec(replicas, zones, multiZone string) []byte {
	r := strings.NewReplacer("%REPLICAS%", replicas, "%ZONES%", zones, "%MZ%", multiZone)
	return []byte(r.Replace(minimal))
}

func TestDefaults(t *testing.T) {
	c, _, err := Parse("cluster.yaml", minimalSpec("1", "europe-west1-b", "false"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Spec
	if s.GCE.Network != "default" || s.Masters.MachineType != "n1-standard-2" || s.Masters.Image != DefaultImage ||
		s.Masters.DiskSizeGb != 20 || !s.Etcd.QuorumReadEnabled() || s.Etcd.ClientPort != 2379 || s.Etcd.PeerPort != 2380 ||
		s.Remediation.UnhealthyAfter.Duration != DefaultUnhealthyAfter || s.PKI.Dir != "pki" || s.Remediation.ReplaceUnhealthy {
		t.Errorf("defaults not applied: %+v", s)
	}
	before := c.Hash()
	SetDefaults(c)
	if c.Hash() != before {
		t.Error("SetDefaults is not idempotent")
	}
	// An explicit false is kept.
	data := append(minimalSpec("1", "europe-west1-b", "false"), []byte("  etcd:\n    quorumRead: false\n")...)
	c, _, err = Parse("cluster.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Etcd.QuorumReadEnabled() {
		t.Error("quorumRead: false was overridden by the default")
	}
	if c.Hash() == before {
		t.Error("Hash ignores a changed field")
	}
}

func TestReplicaCounts(t *testing.T) {
	zones := "europe-west1-b, europe-west1-c, europe-west1-d"
	for _, n := range []string{"1", "3", "5", "7"} {
		if _, _, err := Parse("c.yaml", minimalSpec(n, zones, "true")); err != nil {
			t.Errorf("replicas %s refused: %v", n, err)
		}
	}
	for n, want := range map[string]string{
		"0":  "must be 1, 3, 5 or 7 (got 0)",
		"-1": "must be 1, 3, 5 or 7 (got -1)",
		"2":  "two is worse than one",
		"4":  "over 3 (both survive 1 failure)",
		"6":  "over 5 (both survive 2 failures)",
		"8":  "8 replicas are refused: more than 7",
		"11": "11 replicas are refused: more than 7",
	} {
		_, _, err := Parse("c.yaml", minimalSpec(n, zones, "true"))
		if err == nil || !strings.Contains(err.Error(), "spec.masters.replicas: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("replicas %s: error %v, want one naming spec.masters.replicas with %q", n, err, want)
		}
	}
}

func TestZoneWarnings(t *testing.T) {
	_, warnings, err := Parse("c.yaml", minimalSpec("3", "europe-west1-b", "false"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0].String(), "all 3 masters are in europe-west1-b: a failure of that zone takes every master") {
		t.Errorf("warnings = %v", warnings)
	}
	_, warnings, err = Parse("c.yaml", minimalSpec("1", "europe-west1-b, europe-west1-c", "true"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0].String(), "europe-west1-c hold no master with 1 replicas") {
		t.Errorf("warnings = %v", warnings)
	}
	_, warnings, err = Parse("c.yaml", minimalSpec("5", "europe-west1-b, europe-west1-c", "true"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) < 1 || !strings.Contains(warnings[0].String(), "europe-west1-b holds 3 of 5 masters, a quorum") {
		t.Errorf("warnings = %v", warnings)
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("# padding\n", 1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{"", "no cluster spec given: pass -f cluster.yaml"},
		{filepath.Join(dir, "missing.yaml"), "missing.yaml: no such file: pass the path of your cluster.yaml with -f"},
		{dir, "is a directory: pass the path of a cluster.yaml file in it with -f"},
		{big, "big.yaml is 10485760 bytes: a cluster spec is at most 1048576 bytes"},
	}
	for _, tt := range tests {
		_, _, err := Load(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", tt.path, err, tt.want)
		}
	}
}

func TestParseOddDocuments(t *testing.T) {
	tests := []struct{ data, want string }{
		{"", "c.yaml: the file is empty"},
		{"   \n\n", "c.yaml: the file is empty"},
		{"---\n", "c.yaml: the file is empty"},
		{"- a\n- b\n", "c.yaml:1: the document is a list: a cluster spec is a mapping"},
		{"hello\n", "c.yaml:1: the document is a single value"},
		{"\xff\xfe\x00", "c.yaml: the file is not UTF-8 text"},
		{"apiVersion: kubeha.io/v1alpha1\nkind: Cluster\nspec: [1, 2]\n", "c.yaml:3: spec: want a mapping with fields gce, masters, multiZone, etcd, remediation, pki, kubernetes, access, addons, got a list"},
		{"apiVersion: kubeha.io/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  masters:\n    replicas: 99999999999\n", "c.yaml:6: spec.masters.replicas: 99999999999 is out of range"},
		{"apiVersion: kubeha.io/v1alpha1\nkind: Cluster\nspec: &a {gce: *a}\n", "c.yaml:3: spec.gce.gce: unknown field \"gce\" in spec.gce"},
		{"kind: Cluster\n", "c.yaml: apiVersion: is missing: is this a kubeha cluster spec?"},
	}
	for _, tt := range tests {
		_, _, err := Parse("c.yaml", []byte(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.data, err, tt.want)
		}
	}
}

func TestDerivedNamesFit(t *testing.T) {
	name := strings.Repeat("a", MaxNameLength)
	for _, n := range AllResourceNames(name) {
		if len(n) > 63 {
			t.Errorf("%s is %d characters", n, len(n))
		}
		if !rfc1035Re.MatchString(n) {
			t.Errorf("%s is not an RFC 1035 name", n)
		}
	}
}

func TestSchemaUpToDate(t *testing.T) {
	got := JSONSchema()
	if golden.Update() {
		if err := os.WriteFile("cluster.schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("cluster.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("spec/cluster.schema.json is out of date: run go generate ./spec")
	}
	for _, key := range []string{`"replicas"`, `"enum": [`, `"additionalProperties": false`, `"pattern": "^[a-z]+-[a-z]+[0-9]+-[a-z]$"`, `"const": "kubeha.io/v1alpha1"`} {
		if !strings.Contains(string(got), key) {
			t.Errorf("schema lacks %s", key)
		}
	}
}

// TestNetworkPaths: every accepted form of spec.gce.network and
// spec.gce.subnetwork reaches the API as one path.
func TestNetworkPaths(t *testing.T) {
	for _, tc := range []struct{ network, subnetwork, wantNet, wantSub string }{
		{"", "", "projects/p/global/networks/default", "projects/p/regions/europe-west1/subnetworks/default"},
		{"vpc", "masters", "projects/p/global/networks/vpc", "projects/p/regions/europe-west1/subnetworks/masters"},
		{"projects/host/global/networks/shared", "projects/host/regions/europe-west1/subnetworks/m", "projects/host/global/networks/shared", "projects/host/regions/europe-west1/subnetworks/m"},
		{"https://www.googleapis.com/compute/v1/projects/host/global/networks/auto", "", "projects/host/global/networks/auto", "projects/host/regions/europe-west1/subnetworks/auto"},
		{"vpc", "https://www.googleapis.com/compute/v1/projects/p/regions/europe-west1/subnetworks/s", "projects/p/global/networks/vpc", "projects/p/regions/europe-west1/subnetworks/s"},
	} {
		g := GCE{Project: "p", Region: "europe-west1", Network: tc.network, Subnetwork: tc.subnetwork}
		if got := g.NetworkPath(); got != tc.wantNet {
			t.Errorf("network %q: %s, want %s", tc.network, got, tc.wantNet)
		}
		if got := g.SubnetworkPath(); got != tc.wantSub {
			t.Errorf("network %q subnetwork %q: %s, want %s", tc.network, tc.subnetwork, got, tc.wantSub)
		}
	}
}
