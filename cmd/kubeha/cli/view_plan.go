package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/state"
)

// planView renders a plan; the text, JSON and markdown views are built from
// the same data, so they never disagree.
type planView interface {
	Render(w io.Writer, p *planner.Plan) error
}

var (
	_ planView = planText{}
	_ planView = planJSON{}
	_ planView = planMarkdown{}
)

func planViewFor(format string) (planView, error) {
	switch format {
	case "text", "":
		return planText{}, nil
	case "json":
		return planJSON{}, nil
	case "markdown", "md":
		return planMarkdown{}, nil
	}
	return nil, fmt.Errorf("-o %s: choose text, json or markdown", format)
}

func membershipWords(m state.Membership) string {
	if m.Voters == 0 {
		return "no members"
	}
	s := fmt.Sprintf("%d voter%s", m.Voters, plural(m.Voters))
	if m.Learners > 0 {
		s += fmt.Sprintf(" + %d learner%s", m.Learners, plural(m.Learners))
	}
	return s + fmt.Sprintf(", %d healthy, quorum %d, fault tolerance %d", m.HealthyVoters, m.Quorum, m.FaultTolerance)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// phases groups steps by phase, in order of first appearance.
func phases(p *planner.Plan) ([]string, map[string][]*planner.Step) {
	var order []string
	by := map[string][]*planner.Step{}
	for _, s := range p.Steps {
		if _, ok := by[s.Phase]; !ok {
			order = append(order, s.Phase)
		}
		by[s.Phase] = append(by[s.Phase], s)
	}
	return order, by
}

// planText is terraform-like: symbols, steps grouped by phase, an etcd column.
type planText struct{}

func (planText) Render(w io.Writer, p *planner.Plan) error {
	fmt.Fprintf(w, "Cluster %s (project %s, region %s)\n", p.Cluster, p.Project, p.Region)
	fmt.Fprintf(w, "etcd now: %s\n\n", membershipWords(p.Before))
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", warn)
	}
	if len(p.Warnings) > 0 {
		fmt.Fprintln(w)
	}
	if p.NoChanges {
		fmt.Fprintln(w, "No changes. The cluster matches the spec.")
		return nil
	}
	fmt.Fprintln(w, "kubeha will perform these steps (+ create, ~ update, - delete):")
	width := 0
	for _, s := range p.Steps {
		width = max(width, len(string(s.Action))+len(s.Target)+1)
	}
	order, by := phases(p)
	for _, ph := range order {
		fmt.Fprintf(w, "\n  # %s\n", ph)
		for _, s := range by[ph] {
			after := ""
			if len(s.DependsOn) > 0 {
				after = " after " + strings.Join(s.DependsOn, ",")
			}
			label := string(s.Action) + " " + s.Target
			line := fmt.Sprintf("  %3s %s %-*s  etcd %-18s%s", s.ID, s.Change.Symbol(), width, label, planner.MembershipString(s.Etcd), after)
			fmt.Fprintln(w, strings.TrimRight(line, " "))
			fmt.Fprintf(w, "        %s\n", s.Reason)
			if s.Runs != nil {
				fmt.Fprintf(w, "        then running: %s\n", planner.RunsString(s.Runs))
			}
		}
	}
	fmt.Fprintf(w, "\nPlan: %d to create, %d to update, %d to delete.\n", p.Summary.Create, p.Summary.Update, p.Summary.Delete)
	fmt.Fprintf(w, "etcd after: %s\n", membershipWords(p.After))
	for _, k := range p.Kubelets {
		fmt.Fprintf(w, "\nThe masters booted download the kubelet of Kubernetes %s and start only if it hashes to the digest pinned in their metadata:\n", k.Version)
		fmt.Fprintf(w, "  %s\n  SHA-512 %s\n  (from %s)\n", k.URL, k.SHA512, k.Source)
	}
	return nil
}

// planJSON is the documented JSON plan (DESIGN.md §5).
type planJSON struct{}

func (planJSON) Render(w io.Writer, p *planner.Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// MaxMarkdown is the largest markdown plan: a pull-request comment holds
// 65,536 characters.
const MaxMarkdown = 65000

// planMarkdown is for pull-request comments: warnings first, a summary
// table, a mermaid graph of the steps, and the details folded away. It
// stays under MaxMarkdown characters however large the plan.
type planMarkdown struct{}

func (planMarkdown) Render(w io.Writer, p *planner.Plan) error {
	_, err := io.WriteString(w, renderMarkdown(p, true, len(p.Steps)))
	if err != nil {
		return err
	}
	return nil
}

func renderMarkdown(p *planner.Plan, graph bool, rows int) string {
	out := markdown(p, graph, rows)
	if len(out) <= MaxMarkdown {
		return out
	}
	if graph {
		return renderMarkdown(p, false, rows)
	}
	for rows > 0 && len(out) > MaxMarkdown {
		rows = rows * 3 / 4
		out = markdown(p, false, rows)
	}
	return out
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;", "\n", " ").Replace(s)
}

func markdown(p *planner.Plan, graph bool, rows int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### kubeha plan: `%s` (%s, %s)\n\n", p.Cluster, p.Project, p.Region)
	if len(p.Warnings) > 0 {
		b.WriteString("> [!WARNING]\n")
		for _, w := range p.Warnings {
			fmt.Fprintf(&b, "> - %s\n", mdEscape(w))
		}
		b.WriteString("\n")
	}
	if p.NoChanges {
		b.WriteString("**No changes.** The cluster matches the spec.\n\n")
		fmt.Fprintf(&b, "etcd: %s\n", membershipWords(p.Before))
		return b.String()
	}
	b.WriteString("| create | update | delete | etcd before | etcd after |\n|---:|---:|---:|---|---|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %s | %s |\n\n", p.Summary.Create, p.Summary.Update, p.Summary.Delete,
		membershipWords(p.Before), membershipWords(p.After))
	if graph {
		b.WriteString("```mermaid\ngraph TD\n")
		for _, s := range p.Steps {
			fmt.Fprintf(&b, "  s%s[\"%s %s %s\"]\n", s.ID, s.Change.Symbol(), s.Action, s.Target)
			for _, d := range s.DependsOn {
				fmt.Fprintf(&b, "  s%s --> s%s\n", d, s.ID)
			}
		}
		b.WriteString("```\n\n")
	} else {
		b.WriteString("_The step graph is left out to keep this comment within GitHub's size limit._\n\n")
	}
	for _, k := range p.Kubelets {
		fmt.Fprintf(&b, "Masters booted download the kubelet of Kubernetes %s, `%s`, and start only if it hashes to SHA-512 `%s` (from %s).\n\n",
			k.Version, mdEscape(k.URL), k.SHA512, mdEscape(k.Source))
	}
	fmt.Fprintf(&b, "<details><summary>%d steps</summary>\n\n", len(p.Steps))
	b.WriteString("| # | | action | target | zone | after | etcd | reason |\n|---:|---|---|---|---|---|---|---|\n")
	for i, s := range p.Steps {
		if i >= rows {
			fmt.Fprintf(&b, "\n_%d more steps are left out to keep this comment within GitHub's size limit: see `kubeha plan -o json`._\n", len(p.Steps)-rows)
			break
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | `%s` | %s | %s | %s | %s |\n", s.ID, s.Change.Symbol(), s.Action, s.Target, s.Zone,
			strings.Join(s.DependsOn, ","), planner.MembershipString(s.Etcd), mdEscape(reasonAndRuns(s)))
	}
	b.WriteString("\n</details>\n")
	return b.String()
}

// reasonAndRuns is a step's reason, with the releases the masters then
// run when the plan runs more than one.
func reasonAndRuns(s *planner.Step) string {
	if s.Runs == nil {
		return s.Reason
	}
	return s.Reason + "; then running: " + planner.RunsString(s.Runs)
}
