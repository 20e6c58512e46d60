package config

import (
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type foreignOptions struct {
	BufferSize resource.QuantityValue `json:"bufferSize"`
}

type foreignConfig struct {
	metav1.TypeMeta `json:""`
	Port            int32             `json:"port"`
	Policy          string            `json:"policy"`
	Gates           map[string]bool   `json:"gates"`
	Flag            *bool             `json:"flag"`
	Options         foreignOptions    `json:"options"`
	Timeout         metav1.Duration   `json:"timeout"`
	Extra           map[string]string `json:"extra"`
}

func foreignTable() []ForeignField {
	return []ForeignField{
		{Path: "port", Handling: Supported},
		{Path: "policy", Handling: Unsupported, Reason: "no policies", Accept: []any{"none"}},
		{Path: "gates", Handling: Ignored, Reason: "no gates"},
		{Path: "flag", Handling: Unsupported, Reason: "always on", Accept: []any{true}},
		{Path: "options", Handling: Ignored, Reason: "fixed"},
		{Path: "timeout", Handling: Ignored, Reason: "fixed"},
	}
}

func TestCheckForeign(t *testing.T) {
	tests := []struct {
		name         string
		data         string
		wantWarnings []string
		wantProblems []string // "field@line"
	}{
		{"zero values are not set", "port: 1\npolicy: \"\"\ngates: {}\noptions:\n  bufferSize: \"0\"\ntimeout: 0s\n", nil, nil},
		{"accepted value", "policy: none\nflag: true\n", nil, nil},
		{"unsupported values", "port: 1\npolicy: static\nflag: false\n", nil, []string{"policy@2", "flag@3"}},
		{"ignored values", "gates: {A: true}\noptions:\n  bufferSize: 1Mi\ntimeout: 5s\n", []string{"gates is ignored: no gates", "options is ignored: fixed", "timeout is ignored: fixed"}, nil},
		{"unclassified field set", "extra: {a: b}\n", nil, []string{"extra@1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("f.yaml", []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			var c foreignConfig
			if ps := f.Decode(&c); len(ps) != 0 {
				t.Fatalf("decode: %v", ps)
			}
			warnings, problems := CheckForeign(&c, foreignTable(), f)
			if strings.Join(warnings, "|") != strings.Join(tc.wantWarnings, "|") {
				t.Errorf("warnings = %q, want %q", warnings, tc.wantWarnings)
			}
			var got []string
			for _, p := range problems {
				got = append(got, p.Field+"@"+strconv.Itoa(p.Line))
			}
			if strings.Join(got, "|") != strings.Join(tc.wantProblems, "|") {
				t.Errorf("problems = %v, want %v", problems, tc.wantProblems)
			}
		})
	}
	if got := UnclassifiedFields(&foreignConfig{}, foreignTable()); strings.Join(got, ",") != "extra" {
		t.Errorf("UnclassifiedFields = %v, want [extra]", got)
	}
}
