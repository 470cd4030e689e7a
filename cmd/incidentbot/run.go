package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// usageError makes the process exit with 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

const usage = `incidentbot — executable incident runbooks for Solana dApps on Kubernetes

Usage:
  incidentbot serve   [--config FILE] [--data-dir DIR]   run the bot (embedded NATS by default)
  incidentbot watch   [--config FILE]                    run only the Solana watchers, publishing to bus.url
  incidentbot check   [--config FILE] [FILES|DIRS...]    validate configuration and runbooks
  incidentbot replay  [--config FILE] PAYLOAD.json       show what a payload would do, without side effects
  incidentbot actions                                    list remediation actions
  incidentbot version

Every setting can also come from INCIDENTBOT_<KEY> environment variables (see README).
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) error {
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
		return replay(ctx, rest, stdout, stderr, environ)
	case "actions":
		return listActions(stdout)
	case "version":
		fmt.Fprintln(stdout, "incidentbot", versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return strings.TrimSpace(v)
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
