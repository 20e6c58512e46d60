// Package configtest holds the checks every configuration version in this module must pass: its
// testdata files load strictly, default, validate and survive a YAML round trip, and a file that
// sets every field is left alone by defaulting. Each version's tests call these with its own type.
package configtest

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// Load strictly unmarshals data (YAML or JSON) into a new T; unknown fields fail the test.
func Load[T any](t *testing.T, data []byte) *T {
	t.Helper()
	c := new(T)
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		t.Fatalf("strict unmarshal: %v", err)
	}
	return c
}

// RoundTrip checks every testdata/*.yaml file in the current directory: it loads strictly, is
// valid after setDefaults, comes back unchanged from a marshal and strict unmarshal, and
// setDefaults is idempotent on it.
func RoundTrip[T any](t *testing.T, setDefaults func(*T), validate func(*T) field.ErrorList) {
	t.Helper()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c := Load[T](t, data)
			setDefaults(c)
			if errs := validate(c); len(errs) != 0 {
				t.Fatalf("testdata must be valid after defaulting: %v", errs.ToAggregate())
			}
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again := Load[T](t, out)
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("round trip changed the object:\nfirst  %+v\nsecond %+v\nyaml:\n%s", c, again, out)
			}
			setDefaults(again)
			if !reflect.DeepEqual(c, again) {
				t.Fatalf("SetDefaults is not idempotent")
			}
		})
	}
}

// KeepsEveryValue checks that setDefaults changes nothing in file, which must set every field:
// a default that overwrote a value the user gave would show here.
func KeepsEveryValue[T any](t *testing.T, file string, setDefaults func(*T)) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := Load[T](t, data)
	before := *c
	setDefaults(c)
	if !reflect.DeepEqual(before, *c) {
		t.Fatalf("%s sets every field, so defaulting must change nothing:\nbefore %+v\nafter  %+v", filepath.Base(file), before, *c)
	}
}
