package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/incidentbot/incidentbot/redact"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// usageError makes the process exit with 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errShown ends a command that printed what was asked (--help, --version)
// with exit code 0.
var errShown = errors.New("shown")

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

const usage = `incidentbot — executable incident runbooks for Solana dApps on Kubernetes

Usage:
  incidentbot serve   [--config FILE] [--data-dir DIR] [--listen ADDR]   run the bot (embedded NATS by default)
  incidentbot watch   --config FILE [--listen ADDR]                      run only the Solana watchers, publishing to bus.url
  incidentbot check   [--config FILE] [--skip-secrets] [--only] [FILES|DIRS...]
                                                                        validate configuration and runbooks
  incidentbot replay  [--config FILE] [--type TYPE] PAYLOAD.json|-       show what a payload would do, without side effects
  incidentbot report  [--config FILE] [--data-dir DIR] ID | --since 7d  an incident's report, or a summary of many
  incidentbot audit   [--config FILE] [--data-dir DIR] [--incident ID] [--since 7d] [--json]
                                                                        the audit trail: who did what, when, plans and hashes
  incidentbot test    FILE|DIR...                                         run runbook tests (see test --help for the format)
  incidentbot actions                                                   list remediation actions, their parameters and what each needs
  incidentbot version [--json]
  incidentbot COMMAND --help                                            a command's flags

Every setting can also come from INCIDENTBOT_<KEY> environment variables (see README).
`

// run runs one command. Its error is what main prints: every URL in it is
// redacted (an error may quote a configured URL and its API key).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) error {
	err := dispatch(ctx, args, stdin, stdout, stderr, environ)
	if errors.Is(err, errShown) {
		return nil
	}
	return redact.Error(err)
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr, environ)
	case "watch":
		return watch(ctx, rest, stdout, stderr, environ)
	case "check":
		return check(rest, stdout, stderr, environ)
	case "replay":
		return replay(ctx, rest, stdin, stdout, stderr, environ)
	case "report":
		return reportCmd(ctx, rest, stdout, stderr, environ)
	case "audit":
		return auditCmd(ctx, rest, stdout, stderr, environ)
	case "test":
		return testRunbooks(ctx, rest, stdout, stderr)
	case "actions":
		return listActions(rest, stdout, stderr)
	case "version":
		return printVersion(rest, stdout, stderr)
	case "--version", "-version", "-v":
		return printVersion(nil, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" && !strings.HasPrefix(rest[0], "-") {
			return dispatch(ctx, []string{rest[0], "--help"}, stdin, stdout, stderr, environ)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// flags is a subcommand's flag set with its usage text.
type flags struct {
	*flag.FlagSet
	synopsis, about string
	stdout, stderr  io.Writer
	version         *bool
}

// newFlags starts a subcommand's flags: synopsis is its argument line,
// about says what it does. Every subcommand takes --help and --version.
func newFlags(name, synopsis, about string, stdout, stderr io.Writer) *flags {
	fs := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis, about: about, stdout: stdout, stderr: stderr}
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parse prints the usage where it belongs
	fs.version = fs.Bool("version", false, "print the version and exit")
	return fs
}

// printUsage writes the subcommand's usage to w.
func (fs *flags) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: incidentbot %s %s\n\n%s\n\nFlags:\n", fs.Name(), fs.synopsis, fs.about)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(fs.stderr)
}

// parse parses args. --help prints the usage to stdout and --version the
// version, both ending the command with exit code 0; a bad flag prints the
// usage to stderr and is a usage error (exit 2).
func (fs *flags) parse(args []string) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.printUsage(fs.stdout)
		return errShown
	case err != nil:
		fs.printUsage(fs.stderr)
		return usageError{err.Error()}
	case *fs.version:
		fmt.Fprintln(fs.stdout, "incidentbot", versionString())
		return errShown
	}
	return nil
}

// coreModules are the libraries `version --json` reports.
var coreModules = []string{
	"github.com/slack-go/slack",
	"github.com/PagerDuty/go-pagerduty",
	"github.com/prometheus/alertmanager",
	"github.com/nats-io/nats.go",
	"github.com/gagliardetto/solana-go",
}

// versionInfo is `version --json`.
type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
	// Modules maps each core library to the version built in.
	Modules map[string]string `json:"modules"`
}

func buildInfo() versionInfo {
	v := versionInfo{Version: version, Commit: "unknown", Modules: map[string]string{}}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Go = bi.GoVersion
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v.Commit = s.Value
		}
	}
	for _, m := range bi.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		for _, path := range coreModules {
			if m.Path == path {
				v.Modules[path] = m.Version
			}
		}
	}
	return v
}

func versionString() string {
	v := buildInfo()
	s := v.Version
	if len(v.Commit) >= 12 {
		s += " (" + v.Commit[:12] + ")"
	}
	return strings.TrimSpace(s + " " + v.Go)
}

func printVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "[--json]", "Prints the version; --json adds the commit, the Go version and the versions of the core libraries.", stdout, stderr)
	asJSON := fs.Bool("json", false, "print version, commit, Go version and core module versions as JSON")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"version takes no arguments"}
	}
	if !*asJSON {
		fmt.Fprintln(stdout, "incidentbot", versionString())
		return nil
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(buildInfo())
}
