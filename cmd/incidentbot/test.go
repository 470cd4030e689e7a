package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/incidentbot/incidentbot/runbooks/runbooktest"
)

// testRunbooks runs runbook test files (or every *.yaml and *.yml in a
// directory): each feeds inputs to the engine on a fake clock and checks
// what it decided. Failures print the test file's line and a diff; the
// exit code is 1 when any test fails or any file cannot be loaded.
func testRunbooks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("test", "FILE|DIR...",
		"Runs runbook tests, in the spirit of promtool test rules: each test feeds alerts, on-chain events and\n"+
			"commands at relative times to the engine — its decoders, apply, escalation timers, rendering and\n"+
			"routing, on a fake clock, with no side effects — and checks what the bot decided. A directory\n"+
			"stands for the *.yaml and *.yml files in it. Exit code 1 when a test fails.\n\n"+runbooktest.Format,
		stdout, stderr)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.printUsage(stderr)
		return usageError{"test needs test files or directories"}
	}
	files, err := testFiles(fs.Args())
	if err != nil {
		return err
	}
	var failedTests, badFiles, passed int
	for _, path := range files {
		f, err := runbooktest.Load(path)
		if err == nil {
			var res *runbooktest.Result
			if res, err = runbooktest.Run(ctx, f); err == nil {
				for _, fl := range res.Failures {
					fmt.Fprint(stdout, fl.Report(path))
				}
				passed += res.Passed
				failedTests += len(res.Failures)
				if len(res.Failures) > 0 {
					fmt.Fprintf(stdout, "FAIL %s: %d of %d tests failed (- expected, + decided)\n", path, len(res.Failures), len(f.Tests))
				} else {
					fmt.Fprintf(stdout, "ok   %s: %d tests\n", path, res.Passed)
				}
				continue
			}
		}
		badFiles++
		fmt.Fprintln(stderr, err)
		fmt.Fprintf(stdout, "FAIL %s: not run\n", path)
	}
	if failedTests+badFiles > 0 {
		return fmt.Errorf("runbook tests failed: %d test(s) failed, %d file(s) not run, %d passed", failedTests, badFiles, passed)
	}
	return nil
}

// testFiles expands directories to the YAML files in them, sorted.
func testFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil || !st.IsDir() {
			out = append(out, a) // Load says what is wrong with it
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			return nil, fmt.Errorf("read test directory: %w", err)
		}
		var in []string
		for _, e := range ents {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(e.Name(), ".") {
				in = append(in, filepath.Join(a, e.Name()))
			}
		}
		if len(in) == 0 {
			return nil, fmt.Errorf("test directory %s holds no *.yaml or *.yml file", a)
		}
		slices.Sort(in)
		out = append(out, in...)
	}
	return out, nil
}
