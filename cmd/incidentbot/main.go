// Command incidentbot turns incident runbooks into code: Alertmanager
// alerts and Solana on-chain events become one living Slack card per
// incident, PagerDuty pages for critical ones, and proposed remediation.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ())
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "incidentbot:", err)
		os.Exit(exitCode(err))
	}
}
