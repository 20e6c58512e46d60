package config

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Format describes one component's configuration file: its own versioned kind plus one foreign
// (upstream) version it converts from. The components' loaders are this plus their conversion.
type Format[T any] struct {
	// Component names the program in messages, e.g. "kube-proxy".
	Component string
	// APIVersion and Kind are the component's own format.
	APIVersion, Kind string
	// UpstreamAPIVersion is the foreign apiVersion accepted with the same Kind.
	UpstreamAPIVersion string
	// DecodeUpstream decodes a foreign file into cfg, returning warnings about ignored fields and
	// every problem (decoding and unsupported fields).
	DecodeUpstream func(f *File, cfg *T) (warnings []string, problems []Problem)
	SetDefaults    func(*T)
	Validate       func(*T) field.ErrorList
}

// LoadFile reads the file at path (none when empty), decodes it in whichever format it names,
// applies override (the command line) before defaulting, then validates the final configuration.
// The error lists every problem with its field path and line, or "set on the command line".
func (fm Format[T]) LoadFile(path string, override func(*T) error) (*T, []string, error) {
	cfg := new(T)
	var (
		warnings []string
		problems []Problem
		line     func(string) int
	)
	source := fm.Component + " configuration from flags"
	if path != "" {
		source = path
		f, err := Read(path)
		if err != nil {
			return nil, nil, err
		}
		line = f.Line
		warnings, problems = fm.decode(f, cfg)
	}
	var fromFlags func(string) bool
	if override != nil {
		snap, err := Take(cfg)
		if err != nil {
			return nil, warnings, err
		}
		if err := override(cfg); err != nil {
			return nil, warnings, err
		}
		if fromFlags, err = snap.Changed(cfg); err != nil {
			return nil, warnings, err
		}
	}
	fm.SetDefaults(cfg)
	problems = append(problems, FieldProblems(fm.Validate(cfg), problems, line, fromFlags)...)
	if err := NewError(source, problems); err != nil {
		return nil, warnings, err
	}
	return cfg, warnings, nil
}

// decode dispatches on apiVersion and kind.
func (fm Format[T]) decode(f *File, cfg *T) ([]string, []Problem) {
	apiVersion, kind := f.TypeMeta()
	switch {
	case apiVersion == fm.APIVersion && kind == fm.Kind:
		return nil, f.Decode(cfg)
	case apiVersion == fm.UpstreamAPIVersion && kind == fm.Kind:
		return fm.DecodeUpstream(f, cfg)
	}
	msg := fmt.Sprintf("apiVersion %q with kind %q is not a %s configuration; use apiVersion %s or %s with kind %s",
		apiVersion, kind, fm.Component, fm.APIVersion, fm.UpstreamAPIVersion, fm.Kind)
	if apiVersion == "" || kind == "" {
		msg = fmt.Sprintf("apiVersion and kind are required: apiVersion %s (or %s), kind %s", fm.APIVersion, fm.UpstreamAPIVersion, fm.Kind)
	}
	return nil, []Problem{{Field: "apiVersion", Line: f.Line("apiVersion"), Message: msg}}
}
