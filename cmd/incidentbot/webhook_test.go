package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// webhookRunbook has one webhook step posting to url with a secret header.
func webhookRunbook(url, ref string) string {
	return `name: deploy-hook
title: Deploy hook
match:
  matchers: ['alertname="DeployStuck"']
remediation:
  - id: kick
    title: Kick the deploy service
    action: webhook
    params:
      url: '` + url + `'
      body: {service: '{{ .Labels.service }}'}
      secret_headers:
        Authorization: ` + ref + `
    approval: {approvers: [U012ABCDEF]}
`
}

// TestWebhookStepCheckedAtLoad: check and serve refuse a webhook step
// whose URL the configuration does not allow, or whose secret header names
// no configured secret, each at its line; a step within the allowlist with
// a secret from a Secret volume loads.
func TestWebhookStepCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	rbDir := filepath.Join(dir, "runbooks")
	secrets := filepath.Join(dir, "webhook-secrets")
	for _, d := range []string{rbDir, secrets} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(secrets, "deploy-token"), []byte("Bearer hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rb := filepath.Join(rbDir, "deploy.yaml")
	cfgPath := filepath.Join(dir, "bot.yaml")
	cfg := "listen: 127.0.0.1:0\nbus: {data_dir: " + filepath.Join(dir, "data") + "}\nrunbooks: {dir: " + rbDir + "}\n" +
		"actions:\n  webhook:\n    allow: ['https://hooks.example.com/deploy/']\n    secrets_dir: " + secrets + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(text string) {
		if err := os.WriteFile(rb, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write(webhookRunbook("https://hooks.example.com/deploy/{{ .Labels.service }}", "deploy-token"))
	var out, errOut lockedBuffer
	if err := run(context.Background(), []string{"check", "--config", cfgPath}, nil, &out, &errOut, nil); err != nil {
		t.Fatalf("check an allowed step: %v\n%s", err, errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), "hunter2") {
		t.Error("check prints the header secret")
	}

	write(webhookRunbook("https://evil.example.com/deploy/x", "deploy-tokn"))
	wants := []string{
		rb + `:10: remediation[0].params.url: https://evil.example.com/deploy/x is not under any prefix of actions.webhook.allow`,
		rb + `:13: remediation[0].params.secret_headers.Authorization: no secret "deploy-tokn" is configured`,
	}
	for _, args := range [][]string{{"check", "--config", cfgPath}, {"serve", "--config", cfgPath}} {
		var out, errOut lockedBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := run(ctx, args, nil, &out, &errOut, nil)
		cancel()
		text := errOut.String()
		if err != nil {
			text += err.Error()
		}
		for _, want := range wants {
			if err == nil || !strings.Contains(text, want) {
				t.Errorf("%s: %v\n%s\nwant %s", args[0], err, errOut.String(), want)
			}
		}
	}
}
