package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/runbooks"
)

// check validates the configuration and runbooks. With paths it checks
// those runbook files and directories; without, the shipped runbooks plus
// runbooks.dir from the configuration. Every problem is printed with its
// file:line; the exit code is non-zero when there is any error.
func check(args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("check", stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML) to validate as well")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	var errs []error
	cfg, err := loadConfig(*cfgPath, environ)
	if err != nil {
		errs = append(errs, err)
	}
	reg := actions.Default()
	var set *runbooks.Set
	var warns runbooks.Warnings
	if paths := fs.Args(); len(paths) > 0 {
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				errs = append(errs, fmt.Errorf("runbooks: %w", err))
			}
		}
		set, warns, err = runbooks.LoadFiles(reg, paths...)
	} else {
		set, warns, err = runbooks.LoadDefault(cfg.Runbooks.Dir, reg)
	}
	if err != nil {
		errs = append(errs, err)
	}
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w.Error())
	}
	if err := errors.Join(errs...); err != nil {
		n := strings.Count(err.Error(), "\n") + 1
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("check failed: %d problem(s)", n)
	}
	fmt.Fprintf(stdout, "ok: %d runbooks, configuration valid\n", len(set.All()))
	return nil
}

func listActions(stdout io.Writer) error {
	for _, a := range actions.Default().All() {
		d := a.Describe()
		fmt.Fprintf(stdout, "%s\n  %s\n", d.Name, d.Description)
		for _, p := range d.Params {
			req := ""
			if p.Required {
				req = " (required)"
			}
			fmt.Fprintf(stdout, "    %-20s %-10s %s%s\n", p.Name, p.Type, p.Description, req)
		}
		for _, perm := range d.RBAC {
			group := perm.APIGroup
			if group == "" {
				group = "core"
			}
			fmt.Fprintf(stdout, "    rbac: %s %s: %s\n", group, strings.Join(perm.Resources, ","), strings.Join(perm.Verbs, ","))
		}
		if len(d.Needs) > 0 {
			fmt.Fprintf(stdout, "    needs: %s\n", strings.Join(d.Needs, ", "))
		}
		fmt.Fprintln(stdout)
	}
	return nil
}
