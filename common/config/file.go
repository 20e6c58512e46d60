// Package config loads versioned configuration files strictly: unknown fields, duplicate fields and
// values of the wrong type are all reported at once, each with its field path and line, together with
// the validation problems of the decoded object.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// File is one parsed configuration file. It remembers where each field is written so that decoding
// and validation problems can name their line.
type File struct {
	// Path is the file's path, used in every error.
	Path string

	root  *yaml.Node
	lines map[string]int
}

// Read reads and parses the YAML or JSON file at path.
func Read(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses YAML or JSON data; path only names the source in errors.
func Parse(path string, data []byte) (*File, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, NewError(path, []Problem{{Message: "file is empty"}})
	}
	if trimmed[0] == '{' && json.Valid(trimmed) {
		// Valid JSON holds tabs only as whitespace (inside strings they must be escaped), and YAML
		// refuses tabs as indentation: replacing them keeps every line number.
		data = bytes.ReplaceAll(data, []byte{'\t'}, []byte{' '})
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, NewError(path, []Problem{{Message: "not valid YAML or JSON: " + err.Error()}})
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, NewError(path, []Problem{{Line: extra.Line, Message: "more than one YAML document; a config file holds exactly one"}})
	} else if !errors.Is(err, io.EOF) {
		return nil, NewError(path, []Problem{{Message: "not valid YAML or JSON: " + err.Error()}})
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, NewError(path, []Problem{{Line: root.Line, Message: "top level must be a mapping of fields"}})
	}
	f := &File{Path: path, root: root, lines: map[string]int{}}
	// Top-level keys are always fields, so their lines are known before decoding; this lets
	// problems found before Decode (such as an unknown apiVersion) name their line.
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode {
			if _, seen := f.lines[k.Value]; !seen {
				f.lines[k.Value] = k.Line
			}
		}
	}
	return f, nil
}

// TypeMeta returns the top-level apiVersion and kind, empty when absent or not strings.
func (f *File) TypeMeta() (apiVersion, kind string) {
	for i := 0; i+1 < len(f.root.Content); i += 2 {
		k, v := f.root.Content[i], resolve(f.root.Content[i+1])
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
			continue
		}
		switch k.Value {
		case "apiVersion":
			apiVersion = v.Value
		case "kind":
			kind = v.Value
		}
	}
	return apiVersion, kind
}

// Decode strictly decodes the file into the struct that into points to, following its json tags.
// Every field that is well-formed is decoded even when others are not, and every problem is returned.
func (f *File) Decode(into any) []Problem {
	d := &decoder{lines: f.lines}
	tree, _ := d.value(f.root, reflectTypeOf(into), nil)
	raw, err := json.Marshal(tree)
	if err != nil {
		return append(d.problems, Problem{Message: "internal error encoding decoded fields: " + err.Error()})
	}
	if err := json.Unmarshal(raw, into); err != nil {
		// The walk checked every value against its type, so this is not expected; still report it.
		d.problems = append(d.problems, Problem{Message: "decoding: " + err.Error()})
	}
	return d.problems
}

// Line returns the line where the field with the given path is written, or 0 when the file does not
// set it. Before Decode only top-level fields are known.
func (f *File) Line(path string) int { return f.lines[path] }

// Has reports whether the file sets the field with the given path. Before Decode only top-level
// fields are known.
func (f *File) Has(path string) bool { _, ok := f.lines[path]; return ok }

// FieldProblems turns validation errors into problems located in this file. Errors on fields that
// already have a decoding problem are dropped: the value they judge is not the one the user wrote.
func (f *File) FieldProblems(errs field.ErrorList, decoding []Problem) []Problem {
	return FieldProblems(errs, decoding, f.Line, nil)
}

// FieldProblems turns validation errors into problems. line (may be nil) locates a field path in the
// file; fromFlags (may be nil) tells which fields the command line set, whose problems are then
// attributed to the command line rather than to a line of the file. Errors on fields that already
// have a decoding problem are dropped.
func FieldProblems(errs field.ErrorList, decoding []Problem, line func(string) int, fromFlags func(string) bool) []Problem {
	bad := map[string]bool{}
	for _, p := range decoding {
		bad[p.Field] = true
	}
	var out []Problem
	for _, e := range errs {
		if bad[e.Field] {
			continue
		}
		p := Problem{Field: e.Field, Message: e.ErrorBody()}
		switch {
		case fromFlags != nil && fromFlags(e.Field):
			p.Message += " (set on the command line)"
		case line != nil:
			p.Line = line(e.Field)
		}
		out = append(out, p)
	}
	return out
}

// Load reads the file at path and strictly decodes it into into. The error, when not nil, is an
// *Error listing every problem.
func Load(path string, into any) (*File, error) {
	f, err := Read(path)
	if err != nil {
		return nil, err
	}
	return f, NewError(path, f.Decode(into))
}
