// Package hostname resolves the node name both agents register and look themselves up by.
package hostname

import (
	"fmt"
	"os"
	"strings"
)

// Resolve returns override, else the host name, trimmed and lower-cased as Kubernetes object
// names must be. Both agents must agree on it, or kube-proxy never finds the kubelet's Node.
func Resolve(override string) (string, error) {
	name := override
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("reading the host name (set --hostname-override): %w", err)
		}
		name = h
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", fmt.Errorf("empty node name (set --hostname-override)")
	}
	return name, nil
}
