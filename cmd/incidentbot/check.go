package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/incidentbot/incidentbot/actions"
	"github.com/incidentbot/incidentbot/app"
	"github.com/incidentbot/incidentbot/config"
	"github.com/incidentbot/incidentbot/runbooks"
)

// check validates the configuration and runbooks as serve would load
// them: the shipped runbooks with runbooks.dir over them, or with the
// runbook files and directories given over them (--only: those alone). The
// configuration is validated as serve validates it. Every problem is
// printed with its file:line, files missing on this host apart from
// malformed configuration; the exit code is non-zero when there is any
// problem.
func check(args []string, stdout, stderr io.Writer, environ []string) error {
	fs := newFlags("check", "[--config FILE] [--skip-secrets] [--only] [FILES|DIRS...]",
		"Validates the configuration as serve does and the runbooks as serve loads them: the shipped runbooks\n"+
			"with runbooks.dir, or with FILES and DIRS, over them. Every problem is printed as file:line: path:\n"+
			"message; the exit code is 1 when there is any.",
		stdout, stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML) to validate as well")
	skipSecrets := fs.Bool("skip-secrets", false, "check the configuration's shape only: do not read the files it names (*_file secrets, bus.creds_file, runbooks.dir), for a configuration written for another host")
	only := fs.Bool("only", false, "check the given runbook files and directories alone, without the shipped runbooks")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *only && fs.NArg() == 0 {
		return usageError{"check --only needs runbook files or directories"}
	}
	var errs, missing []string
	cfg, err := loadConfig(*cfgPath, environ, config.Options{SkipSecrets: *skipSecrets})
	for _, p := range config.Problems(errors.Unwrap(err)) {
		if p.Missing {
			missing = append(missing, p.Error())
		} else {
			errs = append(errs, p.Error())
		}
	}
	reg := actions.Default()
	var set *runbooks.Set
	var warns runbooks.Warnings
	switch paths := fs.Args(); {
	case *only:
		set, warns, err = runbooks.LoadFiles(reg, paths...)
	case len(paths) > 0:
		set, warns, err = runbooks.LoadOver(reg, paths...)
	default:
		dir := cfg.Runbooks.Dir
		if st, err := os.Stat(dir); dir != "" && (err != nil || !st.IsDir()) {
			// Reported with the configuration (or skipped with
			// --skip-secrets): check the shipped runbooks alone.
			dir = ""
		}
		set, warns, err = runbooks.LoadDefault(dir, reg)
	}
	if err == nil && *cfgPath != "" {
		// Runbooks checked alone may name keys configured elsewhere;
		// with the configuration they run with, every name must be there.
		err = app.CheckConfigRefs(set, cfg)
		if _, complete := cfg.PagerDuty.RoutingKeyRefs(); !complete && len(set.KeyRefs()) > 0 {
			fmt.Fprintln(stderr, "warning: pagerduty_key_ref names not checked: pagerduty.routing_keys_dir was not read here")
		}
		if !cfg.Actions.WebhookSecretsKnown() {
			fmt.Fprintln(stderr, "warning: webhook secret_headers names not checked: actions.webhook.secrets_dir was not read here")
		}
	}
	if err != nil {
		errs = append(errs, strings.Split(err.Error(), "\n")...)
	}
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w.Error())
	}
	for _, e := range errs {
		fmt.Fprintln(stderr, e)
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "files the configuration names are missing on this host (check the shape alone with --skip-secrets):\n")
		for _, m := range missing {
			fmt.Fprintln(stderr, "  "+m)
		}
	}
	if n := len(errs) + len(missing); n > 0 {
		return fmt.Errorf("check failed: %d problem(s)", n)
	}
	what := "configuration valid"
	if *skipSecrets {
		what = "configuration valid (shape only: secret files not read)"
	}
	fmt.Fprintf(stdout, "ok: %d runbooks, %s\n", len(set.All()), what)
	return nil
}

// listActions prints what each remediation action does, whether it runs
// (behind the runbook's approval policy) or only proposes a plan, its
// parameters, and the Kubernetes permissions and services it needs.
func listActions(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("actions", "", "Lists the remediation actions runbooks may propose, with their parameters: which run (once the\n"+
		"runbook's approval policy is met, exactly once, audited) and which only render a plan for a person to carry out.", stdout, stderr)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"actions takes no arguments"}
	}
	fmt.Fprint(stdout, "Remediation actions. \"runs\": carried out by the bot once the step's approval policy is met\n"+
		"(a dry run when its system is not configured); \"plan only\": the card shows what a person should do.\n"+
		"\"rbac\" is what an action needs; the Helm chart's Role grants it.\n\n")
	for _, a := range actions.Default().All() {
		d := a.Describe()
		mode := "plan only"
		if actions.Runs(a) {
			mode = "runs"
		}
		fmt.Fprintf(stdout, "%s (%s)\n  %s\n", d.Name, mode, d.Description)
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
