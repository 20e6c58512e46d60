package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Handling says what a loader does with a field of a foreign configuration (an upstream component's
// file that it accepts and converts).
type Handling int

const (
	// Supported fields carry over into the native configuration.
	Supported Handling = iota
	// Ignored fields are dropped with a warning: ignoring them changes nothing a workload relies on.
	Ignored
	// Unsupported fields are an error when set: silently dropping them would change behaviour.
	Unsupported
)

func (h Handling) String() string {
	switch h {
	case Supported:
		return "supported"
	case Ignored:
		return "ignored"
	case Unsupported:
		return "unsupported"
	}
	return fmt.Sprintf("Handling(%d)", int(h))
}

// ForeignField classifies one field of a foreign configuration type.
type ForeignField struct {
	// Path is the field's JSON path, e.g. "authentication.webhook.cacheTTL". A struct's path
	// classifies all of its fields at once.
	Path string
	// Handling is what happens when the field is set.
	Handling Handling
	// Accept lists values that behave like kubenode does anyway, so setting the field to one of them
	// is neither warned about nor an error (e.g. cpuManagerPolicy "none").
	Accept []any
	// Reason tells the user why the field is ignored or unsupported.
	Reason string
}

// CheckForeign walks obj, a decoded foreign configuration, and returns a warning for every set field
// that table marks Ignored, and a problem (located in f, which may be nil) for every set field that
// table marks Unsupported or does not classify at all. A field is set when it is not its zero value;
// a pointer is set when it is not nil.
func CheckForeign(obj any, table []ForeignField, f *File) (warnings []string, problems []Problem) {
	byPath := map[string]ForeignField{}
	for _, e := range table {
		byPath[e.Path] = e
	}
	line := func(p string) int {
		if f == nil {
			return 0
		}
		return f.Line(p)
	}
	walkForeign(reflect.ValueOf(obj), "", byPath, func(path string, v reflect.Value, e ForeignField, known bool) {
		if !isSet(v) {
			return
		}
		if !known {
			problems = append(problems, Problem{Field: path, Line: line(path), Message: "not supported by kubenode"})
			return
		}
		if e.Handling == Supported || accepted(v, e.Accept) {
			return
		}
		switch e.Handling {
		case Ignored:
			warnings = append(warnings, fmt.Sprintf("%s is ignored: %s", path, e.Reason))
		case Unsupported:
			problems = append(problems, Problem{Field: path, Line: line(path), Message: "not supported by kubenode: " + e.Reason})
		}
	})
	return warnings, problems
}

// UnclassifiedFields lists the leaf field paths of obj's type that table does not classify, so a test
// can keep the table complete when the foreign type gains fields.
func UnclassifiedFields(obj any, table []ForeignField) []string {
	byPath := map[string]ForeignField{}
	for _, e := range table {
		byPath[e.Path] = e
	}
	var out []string
	walkForeign(reflect.New(reflect.TypeOf(obj).Elem()), "", byPath, func(path string, _ reflect.Value, _ ForeignField, known bool) {
		if !known {
			out = append(out, path)
		}
	})
	sort.Strings(out)
	return out
}

// walkForeign calls fn for each field that the table classifies, descending into structs that it
// does not; apiVersion and kind are skipped.
func walkForeign(v reflect.Value, prefix string, table map[string]ForeignField, fn func(string, reflect.Value, ForeignField, bool)) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v = reflect.New(v.Type().Elem())
		}
		v = v.Elem()
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if sf.Anonymous && name == "" {
			if sf.Type.Name() == "TypeMeta" {
				continue
			}
			walkForeign(v.Field(i), prefix, table, fn)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		fv := v.Field(i)
		if e, ok := table[path]; ok {
			fn(path, fv, e, true)
			continue
		}
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(jsonUnmarshalerType) {
			walkForeign(fv, path, table, fn)
			continue
		}
		fn(path, fv, ForeignField{}, false)
	}
}

type zeroer interface{ IsZero() bool }

func isSet(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil()
	case reflect.Map, reflect.Slice:
		return v.Len() > 0
	}
	if v.CanAddr() {
		if z, ok := v.Addr().Interface().(zeroer); ok {
			return !z.IsZero()
		}
	}
	if v.Kind() == reflect.Struct {
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() && isSet(v.Field(i)) {
				return true
			}
		}
		return false
	}
	return !v.IsZero()
}

func accepted(v reflect.Value, accept []any) bool {
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	got, err := json.Marshal(v.Interface())
	if err != nil {
		return false
	}
	for _, a := range accept {
		want, err := json.Marshal(a)
		if err == nil && string(want) == string(got) {
			return true
		}
	}
	return false
}
