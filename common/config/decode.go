package config

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func reflectTypeOf(into any) reflect.Type {
	t := reflect.TypeOf(into)
	if t == nil {
		return reflect.TypeFor[any]()
	}
	return t
}

// decoder walks a YAML node tree against a Go type. It records problems and the line of every field,
// and builds a JSON-ready tree that holds only the values that passed, so encoding/json can then fill
// the target without ever failing half-way.
type decoder struct {
	problems []Problem
	lines    map[string]int
}

func (d *decoder) fail(p *field.Path, n *yaml.Node, format string, args ...any) {
	d.problems = append(d.problems, Problem{Field: p.String(), Line: n.Line, Message: fmt.Sprintf(format, args...)})
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "an unexpected node"
}

// value checks n against t and returns its JSON-ready form; ok is false when n is unusable.
func (d *decoder) value(n *yaml.Node, t reflect.Type, p *field.Path) (any, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		generic := anyOf(n)
		raw, err := json.Marshal(generic)
		if err != nil {
			d.fail(p, n, "invalid value: %v", err)
			return nil, false
		}
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			d.fail(p, n, "invalid value %s: %v", describeShort(n), err)
			return nil, false
		}
		return json.RawMessage(raw), true
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.fail(p, n, "wrong type: expected a string, got %s", describe(n))
			return nil, false
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(p, n, "invalid value %q: %v", n.Value, err)
			return nil, false
		}
		return n.Value, true
	}
	switch t.Kind() {
	case reflect.Interface:
		return anyOf(n), true
	case reflect.Struct:
		return d.structValue(n, t, p)
	case reflect.Map:
		return d.mapValue(n, t, p)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return d.scalar(n, "!!str", "a string", p)
		}
		return d.listValue(n, t, p)
	case reflect.String:
		return d.scalar(n, "!!str", "a string", p)
	case reflect.Bool:
		return d.scalar(n, "!!bool", "true or false", p)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(p, n, "wrong type: expected an integer, got %s", describe(n))
			return nil, false
		}
		var v int64
		if err := n.Decode(&v); err != nil || reflect.Zero(t).OverflowInt(v) {
			d.fail(p, n, "invalid value %s: out of range for %s", n.Value, t.Kind())
			return nil, false
		}
		return v, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(p, n, "wrong type: expected a non-negative integer, got %s", describe(n))
			return nil, false
		}
		var v uint64
		if err := n.Decode(&v); err != nil || reflect.Zero(t).OverflowUint(v) {
			d.fail(p, n, "invalid value %s: out of range for %s", n.Value, t.Kind())
			return nil, false
		}
		return v, true
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			d.fail(p, n, "wrong type: expected a number, got %s", describe(n))
			return nil, false
		}
		var v float64
		if err := n.Decode(&v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			d.fail(p, n, "invalid value %s: not a finite number", n.Value)
			return nil, false
		}
		return v, true
	}
	d.fail(p, n, "cannot decode into Go type %s", t)
	return nil, false
}

func describeShort(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q", n.Value)
	}
	return describe(n)
}

func (d *decoder) scalar(n *yaml.Node, tag, want string, p *field.Path) (any, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != tag {
		d.fail(p, n, "wrong type: expected %s, got %s", want, describe(n))
		return nil, false
	}
	if tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(p, n, "invalid value %q: %v", n.Value, err)
			return nil, false
		}
		return b, true
	}
	return n.Value, true
}

// keys walks the key/value pairs of a mapping, recording lines and reporting duplicate keys.
func (d *decoder) keys(n *yaml.Node, child func(key string) *field.Path, each func(key string, kn, vn *yaml.Node, p *field.Path)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := resolve(n.Content[i]), n.Content[i+1]
		if kn.Kind != yaml.ScalarNode {
			d.fail(child("?"), kn, "keys must be plain strings, got %s", describe(kn))
			continue
		}
		p := child(kn.Value)
		if first, dup := seen[kn.Value]; dup {
			d.fail(p, kn, "duplicate field (first set at line %d)", first)
			continue
		}
		seen[kn.Value] = kn.Line
		d.lines[p.String()] = kn.Line
		each(kn.Value, kn, vn, p)
	}
}

func (d *decoder) structValue(n *yaml.Node, t reflect.Type, p *field.Path) (any, bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(p, n, "wrong type: expected a mapping of fields, got %s", describe(n))
		return nil, false
	}
	fields := jsonFields(t)
	out := map[string]any{}
	d.keys(n, func(k string) *field.Path { return childPath(p, k) }, func(key string, kn, vn *yaml.Node, cp *field.Path) {
		ft, known := fields[key]
		if !known {
			d.fail(cp, kn, "unknown field")
			return
		}
		if v, ok := d.value(vn, ft, cp); ok {
			out[key] = v
		}
	})
	return out, true
}

func childPath(p *field.Path, name string) *field.Path {
	if p == nil {
		return field.NewPath(name)
	}
	return p.Child(name)
}

func (d *decoder) mapValue(n *yaml.Node, t reflect.Type, p *field.Path) (any, bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(p, n, "wrong type: expected a mapping, got %s", describe(n))
		return nil, false
	}
	if t.Key().Kind() != reflect.String {
		d.fail(p, n, "cannot decode maps keyed by %s", t.Key())
		return nil, false
	}
	out := map[string]any{}
	d.keys(n, func(k string) *field.Path { return p.Key(k) }, func(key string, _, vn *yaml.Node, cp *field.Path) {
		if v, ok := d.value(vn, t.Elem(), cp); ok {
			out[key] = v
		}
	})
	return out, true
}

func (d *decoder) listValue(n *yaml.Node, t reflect.Type, p *field.Path) (any, bool) {
	if n.Kind != yaml.SequenceNode {
		d.fail(p, n, "wrong type: expected a list, got %s", describe(n))
		return nil, false
	}
	if t.Kind() == reflect.Array && len(n.Content) > t.Len() {
		d.fail(p, n, "too many items: at most %d", t.Len())
		return nil, false
	}
	out := make([]any, 0, len(n.Content))
	for i, item := range n.Content {
		ip := p.Index(i)
		d.lines[ip.String()] = item.Line
		if v, ok := d.value(item, t.Elem(), ip); ok {
			out = append(out, v)
		}
	}
	return out, true
}

// jsonFields maps the JSON names of a struct's fields to their types, flattening embedded structs
// the way encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, exists := out[k]; !exists {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// anyOf converts a node to plain Go values without a target type.
func anyOf(n *yaml.Node) any {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[resolve(n.Content[i]).Value] = anyOf(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			l = append(l, anyOf(c))
		}
		return l
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b
			}
		case "!!int":
			var i int64
			if n.Decode(&i) == nil {
				return i
			}
			var u uint64
			if n.Decode(&u) == nil {
				return u
			}
		case "!!float":
			var f float64
			if n.Decode(&f) == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
				return f
			}
		}
		return n.Value
	}
	return nil
}
