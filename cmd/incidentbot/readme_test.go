package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/runbooks"
)

// TestREADMESmallTruths keeps the README's numbers true: how many
// runbooks ship and the Go version go.mod requires.
func TestREADMESmallTruths(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	set, _, err := runbooks.LoadDefault("", actions.Default())
	if err != nil {
		t.Fatal(err)
	}
	words := []string{"Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten",
		"Eleven", "Twelve", "Thirteen", "Fourteen", "Fifteen", "Sixteen", "Seventeen", "Eighteen", "Nineteen", "Twenty"}
	m := regexp.MustCompile(`(\w+) ship in the binary`).FindSubmatch(readme)
	if n := len(set.All()); m == nil || n >= len(words) || string(m[1]) != words[n] {
		t.Errorf("README: %q ship in the binary, but %d runbooks ship", m, n)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod: no go line")
	}
	if want := "Go ≥ " + string(goLine[1]) + " "; !strings.Contains(string(readme), want) {
		t.Errorf("README does not state the minimum %q that go.mod's go line sets", strings.TrimSpace(want))
	}
}

// TestREADMERunbookTestExample: the runbook test the README shows is one
// the shipped tests run, word for word.
func TestREADMERunbookTestExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n# runbooks/tests/rpc-endpoint-down.yaml \\(part\\)\ntests:\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README: no runbook test example")
	}
	shipped, err := os.ReadFile("../../runbooks/tests/rpc-endpoint-down.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(shipped), string(m[1])) {
		t.Errorf("the README's runbook test is not in runbooks/tests/rpc-endpoint-down.yaml:\n%s", m[1])
	}
}
