package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Snapshot records a configuration object's JSON form so that Changed can later tell which fields
// something (the command line) changed.
type Snapshot struct{ before any }

// Take snapshots obj.
func Take(obj any) (Snapshot, error) {
	v, err := generic(obj)
	return Snapshot{before: v}, err
}

// Changed returns a predicate telling whether the value at a field path (in field.Path form, e.g.
// "authentication.webhook.cacheTTL" or "nodeLabels[a]") differs between the snapshot and obj. A
// change to a field also counts for its parents, and a map or list counts as changed as a whole.
func (s Snapshot) Changed(obj any) (func(path string) bool, error) {
	after, err := generic(obj)
	if err != nil {
		return nil, err
	}
	changed := map[string]bool{}
	diff(s.before, after, "", changed)
	return func(path string) bool {
		if changed[path] {
			return true
		}
		// nodeLabels[a] and clusterDNS[0] belong to nodeLabels and clusterDNS.
		if i := strings.IndexByte(path, '['); i > 0 {
			return changed[path[:i]]
		}
		return false
	}, nil
}

func generic(obj any) (any, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding configuration: %w", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("decoding configuration: %w", err)
	}
	return v, nil
}

func diff(a, b any, path string, changed map[string]bool) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		if reflect.DeepEqual(a, b) {
			return false
		}
		changed[path] = true
		return true
	}
	differs := false
	for k := range union(am, bm) {
		p := k
		if path != "" {
			p = path + "." + k
		}
		if diff(am[k], bm[k], p, changed) {
			differs = true
		}
	}
	if differs && path != "" {
		changed[path] = true
	}
	return differs
}

func union(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
