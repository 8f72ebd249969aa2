package spec

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-playground/validator/v10"
)

// Problem is one thing wrong (or, as a warning, worth knowing) about a spec.
type Problem struct {
	Field   string // field path, e.g. spec.masters.replicas; empty for the whole file
	Line    int    // 1-based line in the file; 0 when unknown
	Message string // what is wrong and what to do
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is every problem found in one file. Load and Parse return it.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.File + ":" + p.String()
		if p.Line == 0 {
			lines[i] = e.File + ": " + p.String()
		}
	}
	return strings.Join(lines, "\n")
}

var (
	rfc1035Re     = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	projectRe     = regexp.MustCompile(`^([a-z][-a-z0-9.]*[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$`)
	regionRe      = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)
	zoneRe        = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+-[a-z]$`)
	machineTypeRe = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)+$`)
	imageRe       = regexp.MustCompile(`^((https://www\.googleapis\.com/compute/v1/)?projects/[-a-z0-9.:]+/global/images/(family/)?)?[a-z]([-a-z0-9]*[a-z0-9])?$`)
	networkRe     = regexp.MustCompile(`^((https://www\.googleapis\.com/compute/v1/)?projects/[-a-z0-9.:]+/global/networks/)?[a-z]([-a-z0-9]*[a-z0-9])?$`)
	subnetworkRe  = regexp.MustCompile(`^((https://www\.googleapis\.com/compute/v1/)?projects/[-a-z0-9.:]+/regions/[a-z]+-[a-z]+[0-9]+/subnetworks/)?[a-z]([-a-z0-9]*[a-z0-9])?$`)
)

// customRules are the string formats checked by the validator, with the
// message shown when a value does not match. The JSON Schema uses the same
// patterns.
var customRules = map[string]struct {
	re   *regexp.Regexp
	what string
}{
	"rfc1035":        {rfc1035Re, "is not an RFC 1035 label: use lowercase letters, digits and '-', start with a letter and end with a letter or digit"},
	"gceproject":     {projectRe, "is not a GCP project ID: 6 to 30 lowercase letters, digits and '-', starting with a letter (the ID, not the display name)"},
	"gceregion":      {regionRe, "is not a GCE region: write it like europe-west1"},
	"gcezone":        {zoneRe, "is not a GCE zone: write it like europe-west1-b"},
	"gcemachinetype": {machineTypeRe, "is not a machine type: write it like n1-standard-2 or e2-standard-4"},
	"gceimage":       {imageRe, "is not an image: write projects/PROJECT/global/images/family/FAMILY or projects/PROJECT/global/images/NAME"},
	"gcenetwork":     {networkRe, "is not a network: write its name (default) or projects/PROJECT/global/networks/NAME"},
	"gcesubnetwork":  {subnetworkRe, "is not a subnetwork: write its name or projects/PROJECT/regions/REGION/subnetworks/NAME"},
}

var (
	validateOnce sync.Once
	validate     *validator.Validate
)

func structValidator() *validator.Validate {
	validateOnce.Do(func() {
		v := validator.New(validator.WithRequiredStructEnabled())
		v.RegisterTagNameFunc(jsonName)
		for tag, r := range customRules {
			re := r.re
			if err := v.RegisterValidation(tag, func(fl validator.FieldLevel) bool {
				return re.MatchString(fl.Field().String())
			}); err != nil {
				panic(fmt.Sprintf("register validation %s: %v", tag, err)) // programming error, caught by every test
			}
		}
		validate = v
	})
	return validate
}

// jsonName is the field's name in cluster.yaml, or "-" to skip it.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}

// Validate checks a defaulted spec. It returns every problem at once, and
// warnings about specs that are allowed but weaken availability.
func Validate(c *Cluster) (warnings, problems []Problem) {
	if c.APIVersion != "" && c.APIVersion != APIVersion {
		problems = append(problems, Problem{Field: "apiVersion", Message: fmt.Sprintf("%q is not supported: use %s", c.APIVersion, APIVersion)})
	}
	if c.Kind != "" && c.Kind != Kind {
		problems = append(problems, Problem{Field: "kind", Message: fmt.Sprintf("%q is not supported: use %s", c.Kind, Kind)})
	}
	problems = append(problems, structProblems(c)...)
	problems = append(problems, nameProblems(c.Metadata.Name)...)
	problems = append(problems, replicaProblems(c.Spec.Masters.Replicas)...)
	problems = append(problems, zoneProblems(&c.Spec)...)
	problems = append(problems, etcdProblems(&c.Spec)...)
	problems = append(problems, remediationProblems(&c.Spec.Remediation)...)
	problems = append(problems, kubernetesProblems(&c.Spec.Kubernetes)...)
	problems = append(problems, accessProblems(&c.Spec.Access)...)
	problems = append(problems, addonProblems(&c.Spec.Addons)...)
	problems = append(problems, networkProblems(&c.Spec.GCE)...)
	sortProblems(problems)
	if len(problems) == 0 {
		warnings = spreadWarnings(&c.Spec)
	}
	return warnings, problems
}

func structProblems(c *Cluster) []Problem {
	err := structValidator().Struct(c)
	if err == nil {
		return nil
	}
	verrs, ok := err.(validator.ValidationErrors)
	if !ok {
		return []Problem{{Message: err.Error()}}
	}
	var out []Problem
	for _, fe := range verrs {
		field := strings.TrimPrefix(fe.Namespace(), "Cluster.")
		out = append(out, Problem{Field: field, Message: fieldMessage(field, fe)})
	}
	return out
}

// requiredHints says what to write for each required field.
var requiredHints = map[string]string{
	"apiVersion":         "is required: write apiVersion: " + APIVersion,
	"kind":               "is required: write kind: " + Kind,
	"metadata.name":      "is required: name the cluster (an RFC 1035 label, at most 30 characters)",
	"spec.gce.project":   "is required: set the GCP project ID that holds the masters",
	"spec.gce.region":    "is required: set the region of the masters, e.g. europe-west1",
	"spec.masters.zones": "is required: list at least one zone of spec.gce.region, e.g. [europe-west1-b]",
}

func fieldMessage(field string, fe validator.FieldError) string {
	val := fmt.Sprint(fe.Value())
	switch fe.Tag() {
	case "required":
		if h, ok := requiredHints[field]; ok {
			return h
		}
		return "is required"
	case "min":
		if fe.Kind() == reflect.Slice {
			return fmt.Sprintf("needs at least %s entries", fe.Param())
		}
		return fmt.Sprintf("%s is too small: the minimum is %s", val, fe.Param())
	case "max":
		if fe.Kind() == reflect.Slice {
			return fmt.Sprintf("has too many entries: at most %s", fe.Param())
		}
		return fmt.Sprintf("%s is too large: the maximum is %s", val, fe.Param())
	case "cidr":
		return fmt.Sprintf("%q is not a CIDR range: write it like 10.128.0.5/32", val)
	case "oneof":
		return fmt.Sprintf("%q is not one of %s", val, strings.Join(strings.Fields(fe.Param()), ", "))
	}
	if r, ok := customRules[fe.Tag()]; ok {
		return fmt.Sprintf("%q %s", val, r.what)
	}
	return fmt.Sprintf("%q fails rule %s", val, fe.Tag())
}

func nameProblems(name string) []Problem {
	if name == "" || !rfc1035Re.MatchString(name) {
		return nil // reported by the struct rules
	}
	if len(name) > MaxNameLength {
		return []Problem{{Field: "metadata.name", Message: fmt.Sprintf("%q is %d characters: use at most %d, so that every resource name derived from it (such as %s) fits GCE's 63-character limit",
			name, len(name), MaxNameLength, InternalAddressName(ReplicaName(name, "xxx")))}}
	}
	for _, n := range AllResourceNames(name) {
		if len(n) > 63 {
			return []Problem{{Field: "metadata.name", Message: fmt.Sprintf("derived resource name %s is longer than 63 characters: shorten the name", n)}}
		}
	}
	return nil
}

// AllowedReplicas are the replica counts kubeha manages.
var AllowedReplicas = []int{1, 3, 5, 7}

func replicaProblems(n int) []Problem {
	const f = "spec.masters.replicas"
	switch {
	case n == 2:
		return []Problem{{Field: f, Message: "2 replicas are refused: consensus on two replicas needs both running, so a failure of either loses quorum; two is worse than one. Use 1, or 3 to survive a failure"}}
	case n > 7:
		return []Problem{{Field: f, Message: fmt.Sprintf("%d replicas are refused: more than 7 etcd members slow every write without a useful gain in fault tolerance. Use 7 or fewer", n)}}
	case n >= 4 && n%2 == 0:
		return []Problem{{Field: f, Message: fmt.Sprintf("%d replicas are refused: an even count adds no fault tolerance over %d (both survive %s) and needs one more member for quorum. Use %d or %d",
			n, n-1, plural((n-1)/2, "failure"), n-1, n+1)}}
	case n < 1:
		return []Problem{{Field: f, Message: fmt.Sprintf("must be 1, 3, 5 or 7 (got %d): set the number of masters", n)}}
	}
	return nil
}

func zoneProblems(s *ClusterSpec) []Problem {
	var out []Problem
	zones := s.Masters.Zones
	seen := map[string]int{}
	for i, z := range zones {
		f := fmt.Sprintf("spec.masters.zones[%d]", i)
		if j, dup := seen[z]; dup {
			out = append(out, Problem{Field: f, Message: fmt.Sprintf("%s is listed twice (also zones[%d]): list each zone once", z, j)})
			continue
		}
		seen[z] = i
		if zoneRe.MatchString(z) && regionRe.MatchString(s.GCE.Region) && !strings.HasPrefix(z, s.GCE.Region+"-") {
			out = append(out, Problem{Field: f, Message: fmt.Sprintf("%s is not in region %s: every master must be in spec.gce.region; use zones such as %s-b", z, s.GCE.Region, s.GCE.Region)})
		}
	}
	if len(seen) > 1 && !s.MultiZone {
		out = append(out, Problem{Field: "spec.multiZone", Message: fmt.Sprintf("must be true when spec.masters.zones lists %d zones (kube-up's MULTIZONE=true): set multiZone: true, or list one zone", len(seen))})
	}
	return out
}

// apiServerPort is the port the masters serve the Kubernetes API on, behind
// the load balancer.
const apiServerPort = 443

func etcdProblems(s *ClusterSpec) []Problem {
	var out []Problem
	e := s.Etcd
	if e.ClientPort == e.PeerPort && e.ClientPort != 0 {
		out = append(out, Problem{Field: "spec.etcd.peerPort", Message: fmt.Sprintf("%d is also spec.etcd.clientPort: the client and peer ports must differ (defaults 2379 and 2380)", e.PeerPort)})
	}
	for _, p := range []struct {
		field string
		port  int
	}{{"spec.etcd.clientPort", e.ClientPort}, {"spec.etcd.peerPort", e.PeerPort}} {
		if p.port == apiServerPort {
			out = append(out, Problem{Field: p.field, Message: "443 is the API server's port on every master: choose another port (defaults 2379 and 2380)"})
		}
	}
	return out
}

// Bounds of remediation.unhealthyAfter.
const (
	MinUnhealthyAfter = 30 * time.Second
	MaxUnhealthyAfter = 24 * time.Hour
)

func remediationProblems(r *Remediation) []Problem {
	d := r.UnhealthyAfter.Duration
	if d < MinUnhealthyAfter || d > MaxUnhealthyAfter {
		why := "shorter would replace members that are only restarting or electing a leader"
		if d > MaxUnhealthyAfter {
			why = "longer leaves a failed member in place for days"
		}
		return []Problem{{Field: "spec.remediation.unhealthyAfter", Message: fmt.Sprintf("%s is out of range: use between %s and %s (%s)", d, MinUnhealthyAfter, MaxUnhealthyAfter, why)}}
	}
	return nil
}

// Bounds of addons.checkInterval.
const (
	MinAddonCheckInterval = 5 * time.Second
	MaxAddonCheckInterval = time.Hour
)

func addonProblems(a *Addons) []Problem {
	d := a.CheckInterval.Duration
	if d == 0 {
		return nil
	}
	if d < MinAddonCheckInterval || d > MaxAddonCheckInterval || d%time.Second != 0 {
		return []Problem{{Field: "spec.addons.checkInterval", Message: fmt.Sprintf("%s is not whole seconds between %s and %s: the add-on manager counts its interval in seconds; write e.g. 30s or 1m (default)", d, MinAddonCheckInterval, MaxAddonCheckInterval)}}
	}
	return nil
}

// AddonsDir is the resolved spec.addons.dir, "" when it is not set.
func (c *Cluster) AddonsDir() string {
	if c.Spec.Addons.Dir == "" || filepath.IsAbs(c.Spec.Addons.Dir) {
		return c.Spec.Addons.Dir
	}
	return filepath.Join(c.Dir(), c.Spec.Addons.Dir)
}

// ZoneCount is how many masters a zone holds.
type ZoneCount struct {
	Zone  string
	Count int
}

// Spread places the replicas over the zones in order (the first zone holds the
// first master) and returns each zone with its count, in the order of
// spec.masters.zones.
func (s *ClusterSpec) Spread() []ZoneCount {
	zones := s.Masters.Zones
	if len(zones) == 0 {
		return nil
	}
	out := make([]ZoneCount, len(zones))
	for i, z := range zones {
		out[i].Zone = z
	}
	for i := 0; i < s.Masters.Replicas; i++ {
		out[i%len(zones)].Count++
	}
	return out
}

// Quorum is the majority of n voters.
func Quorum(n int) int { return n/2 + 1 }

func spreadWarnings(s *ClusterSpec) []Problem {
	var out []Problem
	n := s.Masters.Replicas
	spread := s.Spread()
	for _, zc := range spread {
		switch {
		case zc.Count > 1 && zc.Count == n:
			out = append(out, Problem{Field: "spec.masters.zones", Message: fmt.Sprintf("all %d masters are in %s: a failure of that zone takes every master; list more zones of %s", n, zc.Zone, s.GCE.Region)})
		case zc.Count > 1 && zc.Count >= Quorum(n):
			out = append(out, Problem{Field: "spec.masters.zones", Message: fmt.Sprintf("%s holds %d of %d masters, a quorum: a failure of that zone stops the control plane; list more zones", zc.Zone, zc.Count, n)})
		case zc.Count > 1:
			out = append(out, Problem{Field: "spec.masters.zones", Message: fmt.Sprintf("%s holds %d of %d masters: a failure of that zone takes %d at once", zc.Zone, zc.Count, n, zc.Count)})
		}
	}
	if len(spread) > 1 && n > 1 && n%len(spread) != 0 {
		out = append(out, Problem{Field: "spec.masters.replicas", Message: fmt.Sprintf("%d masters cannot be spread evenly over %d zones: the first zones hold more (%s)", n, len(spread), spreadString(spread))})
	}
	if len(spread) > n {
		var idle []string
		for _, zc := range spread[n:] {
			idle = append(idle, zc.Zone)
		}
		out = append(out, Problem{Field: "spec.masters.zones", Message: fmt.Sprintf("%s hold no master with %d replicas", strings.Join(idle, ", "), n)})
	}
	return out
}

func spreadString(spread []ZoneCount) string {
	parts := make([]string, len(spread))
	for i, zc := range spread {
		parts[i] = zc.Zone + "=" + strconv.Itoa(zc.Count)
	}
	return strings.Join(parts, ", ")
}

// sortProblems orders problems by field path so output is stable and reads
// top to bottom like the file.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool { return fieldOrder(ps[i].Field) < fieldOrder(ps[j].Field) })
}

// fieldOrder ranks a field path by the order of the fields in the types, so
// that problems appear in file order even before lines are known.
func fieldOrder(path string) string {
	var key strings.Builder
	t := reflect.TypeOf(Cluster{})
	for _, seg := range splitPath(path) {
		if seg.index >= 0 {
			fmt.Fprintf(&key, "[%04d]", seg.index)
			continue
		}
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			key.WriteString("~")
			continue
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			if jsonName(t.Field(i)) == seg.name {
				fmt.Fprintf(&key, "%02d.", i)
				t = t.Field(i).Type
				found = true
				break
			}
		}
		if !found {
			key.WriteString("99.")
		}
	}
	return key.String()
}

type pathSeg struct {
	name  string
	index int // -1 for a name segment
}

// splitPath splits "spec.masters.zones[1]" into name and index segments.
func splitPath(path string) []pathSeg {
	var out []pathSeg
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			continue
		}
		name, rest, _ := strings.Cut(part, "[")
		if name != "" {
			out = append(out, pathSeg{name: name, index: -1})
		}
		for rest != "" {
			num, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if err != nil {
				break
			}
			out = append(out, pathSeg{index: i})
			_, rest, _ = strings.Cut(after, "[")
		}
	}
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// accessProblems refuses a range that opens etcd's client port to the
// internet.
func accessProblems(a *Access) []Problem {
	var out []Problem
	for i, r := range a.SourceRanges {
		if p, err := netip.ParsePrefix(r); err == nil && p.Bits() == 0 {
			out = append(out, Problem{Field: fmt.Sprintf("spec.access.sourceRanges[%d]", i),
				Message: fmt.Sprintf("%s would open etcd's client port to every address: name the ranges of the machines kubeha runs on", r)})
		}
	}
	return out
}

// networkProblems refuses a subnetwork of another region than the
// masters'.
func networkProblems(g *GCE) []Problem {
	if !strings.Contains(g.Subnetwork, "/") || !subnetworkRe.MatchString(g.Subnetwork) || g.Region == "" {
		return nil // a name, or a form the struct rules refuse
	}
	if r := strings.Split(resourcePath(g.Subnetwork), "/")[3]; r != g.Region {
		return []Problem{{Field: "spec.gce.subnetwork", Message: fmt.Sprintf("%s is in region %s, not in spec.gce.region %s: name a subnetwork of %s", g.Subnetwork, r, g.Region, g.Region)}}
	}
	return nil
}
