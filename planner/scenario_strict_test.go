package planner

import (
	"strings"
	"testing"
)

// TestScenarioSyntaxIsStrict: a scenario line with an unknown kind, key,
// flag or value fails, instead of being read as something else.
func TestScenarioSyntaxIsStrict(t *testing.T) {
	for _, line := range []string{
		"instance prod-master b labels=other",
		"instance prod-master b nat=elastic",
		"instance prod-master b poool",
		"member prod-master voter lead",
		"healthcheck probes=80",
		"spec replicas=3 zone=b",
		"node prod-master",
		"disk prod-master-pd",
	} {
		failed := ""
		checkSyntax(strings.Fields(line), func(msg string) { failed = msg })
		if failed == "" {
			t.Errorf("%q was accepted", line)
		}
	}
	for _, line := range []string{"instance prod-master b nat=static labels=none config=none pool", "member prod-master voter leader for=10m", "static-ip missing"} {
		checkSyntax(strings.Fields(line), func(msg string) { t.Errorf("%q: %s", line, msg) })
	}
}
