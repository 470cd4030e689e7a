// Package kube makes the Kubernetes client the remediation actions run
// with (actions.Env.Kube), from the configuration's `kubernetes` section.
package kube

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config is the configuration's `kubernetes` section.
type Config struct {
	// Kubeconfig is a kubeconfig file (kubernetes.kubeconfig). Empty: the
	// in-cluster configuration when running in a pod, else none (the
	// Kubernetes actions are dry-run only).
	Kubeconfig string `yaml:"kubeconfig"`
	// Context is the kubeconfig context to use; empty: its current one.
	Context string `yaml:"context"`
	// Timeout bounds each API request; 0 means DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultTimeout bounds each API request when Config.Timeout is 0.
const DefaultTimeout = 15 * time.Second

// UserAgent is what the API server's audit log shows for the bot.
const UserAgent = "incidentbot"

// RESTConfig returns the client configuration and where it came from
// ("kubeconfig PATH", "in-cluster"). With no kubeconfig and not in a pod
// it returns nil, "" and no error: there is no cluster to act on.
func RESTConfig(cfg Config) (*rest.Config, string, error) {
	var rc *rest.Config
	var from string
	if cfg.Kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig}
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
			&clientcmd.ConfigOverrides{CurrentContext: cfg.Context}).ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes.kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		rc, from = c, "kubeconfig "+cfg.Kubeconfig
		if cfg.Context != "" {
			from += " context " + cfg.Context
		}
	} else {
		c, err := rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, "", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("kubernetes in-cluster configuration: %w", err)
		}
		rc, from = c, "in-cluster"
	}
	rc.UserAgent = UserAgent
	rc.Timeout = cfg.Timeout
	if rc.Timeout == 0 {
		rc.Timeout = DefaultTimeout
	}
	return rc, from, nil
}

// Client returns the clientset for actions.Env.Kube and where its
// configuration came from. It is nil, with no error, when no cluster is
// configured: the actions then report actions.ErrDryRun and the card says
// they would run in dry-run only. Creating it contacts no server.
func Client(cfg Config) (kubernetes.Interface, string, error) {
	rc, from, err := RESTConfig(cfg)
	if err != nil || rc == nil {
		return nil, "", err
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client (%s): %w", from, err)
	}
	return c, from, nil
}
