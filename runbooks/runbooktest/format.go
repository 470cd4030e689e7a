// Package runbooktest is `incidentbot test`: unit tests for runbooks, in
// the spirit of `promtool test rules`. A test file feeds recorded alerts,
// on-chain events and people's commands at relative times to the engine —
// the same decoders, apply, escalation timers, rendering and routing as
// serve, in engine.Simulator, with a fake clock and no side effects — and
// asserts what the bot decided: which incidents exist, where they went,
// whether they paged, what the card and thread say, the proposed steps and
// their plans, and the escalation schedule.
package runbooktest

import (
	"gopkg.in/yaml.v3"

	"github.com/incidentbot/incidentbot/strictyaml"
)

// Format explains the test file format; `incidentbot test --help` prints it.
const Format = `A test file is YAML. It names the runbooks under test and, for each test, the inputs the bot
receives at times relative to the test's start, and what it must have decided at given times.

  runbook_files: [../runbooks]    # files or directories, relative to this file, loaded over the
                                  # shipped runbooks as runbooks.dir is (default: none)
  shipped_runbooks: true          # false: runbook_files alone
  start: 2025-01-01T00:00:00Z     # the fake clock at 0s (this is the default)
  reopen_window: 1h               # engine.reopen_window (default 1h)
  default_channel: "#incidents"   # runbooks.default_channel
  rpc_view:                       # the watchers' ranked RPC view that plans consult (default: none)
    endpoints:
      - {name: primary, url: https://rpc-a.example.com, role: primary, healthy: false}
      - {name: backup-1, url: https://rpc-b.example.com, role: backup, slot_lag: 2}   # healthy: true
  tests:
    - name: RPCEndpointDown pages once and escalates to L2 after 30m
      inputs:                     # in time order; timers due by an input's time fire first
        - at: 0s
          alerts:                 # one Alertmanager notification carrying these alerts
            - labels: {alertname: RPCEndpointDown, severity: critical, endpoint: primary}
              annotations: {summary: Solana RPC endpoint is unreachable}
              status: firing      # or resolved; starts_at (default: at), ends_at (default: at)
          group_key: '{}:{alertname="RPCEndpointDown", severity="critical"}'   # the default
        - at: 1m
          alertmanager: {file: testdata/webhook.json}   # a webhook body (v4), or the body inline
        - at: 2m
          event:                  # an on-chain event, as the watchers publish it
            type: solana.rpc.unhealthy
            file: testdata/primary-unhealthy.json       # or signal: {...} inline; id: (default from the line)
        - at: 40m
          ack: {by: Ada}          # also unack, resolve {text}, note {text}, escalate; via: slack
                                  # (default), pagerduty or cli; incident: INC-0002 when there are
                                  # several (ids are INC-0001, INC-0002, ... in the order they open)
      expect:
        - at: 31m                 # after every input and timer up to then
          incidents:              # every incident opened so far, in the order they opened
            - runbook: rpc-endpoint-down
              id: INC-0001
              severity: critical  # warning, info
              status: firing      # acknowledged, resolved
              channel: "#solana-dapps-alerts"
              page: true          # a page was triggered for it
              pager: [trigger]    # every page action sent: trigger, acknowledge, resolve
              reopened: 0
              title: Solana RPC endpoint primary is unreachable
              alerts: [RPCEndpointDown]                # its alerts' names, firing or resolved
              card: [joined from SolanaRPCUnhealthy]   # texts the card shows
              thread: [escalating to L2]               # texts posted in its thread
              steps:              # every proposed step, in order: its plan contains plan,
                - {id: switch-rpc, plan: set SOLANA_RPC_URL}   # or its plan error contains error
                - {id: notify-rpc-provider, plan: "manual: Notify the RPC provider"}
              escalations:        # every level called so far (the opening calls those due at once)
                - {level: L1 (On-Call), at: 0s}
                - {level: L2 (Senior Engineer), at: 30m}
              next_escalation: {level: L3 (Architect), at: 1h}   # or none
          unmatched: []           # alert names no runbook took (with no fallback)

Only the keys written are checked; incidents, when given, must list every incident. A failure
prints the test file's line, what was expected and what the bot decided. Keep test files out of
runbooks.dir: it is read recursively, and a test file is not a runbook.`

// fileSpec is a test file.
type fileSpec struct {
	RunbookFiles    []string             `yaml:"runbook_files"`
	ShippedRunbooks *bool                `yaml:"shipped_runbooks"`
	Start           string               `yaml:"start"`
	ReopenWindow    *strictyaml.Duration `yaml:"reopen_window"`
	DefaultChannel  string               `yaml:"default_channel"`
	RPCView         *rpcViewSpec         `yaml:"rpc_view"`
	Tests           []testSpec           `yaml:"tests" required:"true"`
}

type rpcViewSpec struct {
	Endpoints []endpointSpec `yaml:"endpoints" required:"true"`
}

type endpointSpec struct {
	Name    string `yaml:"name" required:"true"`
	URL     string `yaml:"url" required:"true"`
	Role    string `yaml:"role" required:"true"`
	Healthy *bool  `yaml:"healthy"`
	SlotLag uint64 `yaml:"slot_lag"`
}

type testSpec struct {
	Name   string       `yaml:"name" required:"true"`
	Inputs []inputSpec  `yaml:"inputs" required:"true"`
	Expect []expectSpec `yaml:"expect" required:"true"`
}

// inputSpec is one input: exactly one of its kinds.
type inputSpec struct {
	At           strictyaml.Duration `yaml:"at" required:"true"`
	Alerts       []alertSpec         `yaml:"alerts"`
	GroupKey     string              `yaml:"group_key"`
	Alertmanager yaml.Node           `yaml:"alertmanager"`
	Event        *eventSpec          `yaml:"event"`
	Ack          *commandSpec        `yaml:"ack"`
	Unack        *commandSpec        `yaml:"unack"`
	Resolve      *commandSpec        `yaml:"resolve"`
	Note         *commandSpec        `yaml:"note"`
	Escalate     *commandSpec        `yaml:"escalate"`
}

type alertSpec struct {
	Labels       map[string]string    `yaml:"labels" required:"true"`
	Annotations  map[string]string    `yaml:"annotations"`
	Status       string               `yaml:"status"`
	StartsAt     *strictyaml.Duration `yaml:"starts_at"`
	EndsAt       *strictyaml.Duration `yaml:"ends_at"`
	GeneratorURL string               `yaml:"generator_url"`
}

type eventSpec struct {
	Type   string    `yaml:"type" required:"true"`
	ID     string    `yaml:"id"`
	File   string    `yaml:"file"`
	Signal yaml.Node `yaml:"signal"`
}

type commandSpec struct {
	By       string `yaml:"by"`
	Via      string `yaml:"via"`
	Incident string `yaml:"incident"`
	Text     string `yaml:"text"`
}

type expectSpec struct {
	At        strictyaml.Duration `yaml:"at" required:"true"`
	Incidents *[]incidentSpec     `yaml:"incidents"`
	Unmatched *[]string           `yaml:"unmatched"`
}

type incidentSpec struct {
	ID          string            `yaml:"id"`
	Runbook     string            `yaml:"runbook"`
	Severity    string            `yaml:"severity"`
	Status      string            `yaml:"status"`
	Channel     string            `yaml:"channel"`
	Page        *bool             `yaml:"page"`
	Pager       *[]string         `yaml:"pager"`
	Reopened    *int              `yaml:"reopened"`
	Title       string            `yaml:"title"`
	Alerts      *[]string         `yaml:"alerts"`
	Card        []string          `yaml:"card"`
	Thread      []string          `yaml:"thread"`
	Steps       *[]stepSpec       `yaml:"steps"`
	Escalations *[]escalationSpec `yaml:"escalations"`
	// NextEscalation is {level, at} or none, decoded by the loader.
	NextEscalation yaml.Node `yaml:"next_escalation"`
}

type stepSpec struct {
	ID    string `yaml:"id" required:"true"`
	Plan  string `yaml:"plan"`
	Error string `yaml:"error"`
}

type escalationSpec struct {
	Level string              `yaml:"level" required:"true"`
	At    strictyaml.Duration `yaml:"at" required:"true"`
}
