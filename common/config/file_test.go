package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

type webhook struct {
	Enabled  *bool           `json:"enabled,omitempty"`
	CacheTTL metav1.Duration `json:"cacheTTL,omitempty"`
}

type authn struct {
	Webhook webhook `json:"webhook"`
}

type taint struct {
	Key    string `json:"key"`
	Effect string `json:"effect"`
}

type testConfig struct {
	metav1.TypeMeta `json:",inline"`
	Port            int32             `json:"port,omitempty"`
	Address         string            `json:"address,omitempty"`
	Ratio           float64           `json:"ratio,omitempty"`
	ClusterDNS      []string          `json:"clusterDNS,omitempty"`
	Labels          map[string]string `json:"nodeLabels,omitempty"`
	Taints          []taint           `json:"registerWithTaints,omitempty"`
	Authentication  authn             `json:"authentication"`
	Limit           *int64            `json:"podPidsLimit,omitempty"`
}

func problemsOf(t *testing.T, data string) (*File, *testConfig, []Problem) {
	t.Helper()
	f, err := Parse("test.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var c testConfig
	return f, &c, f.Decode(&c)
}

func TestDecodeValid(t *testing.T) {
	yes := true
	limit := int64(-1)
	want := testConfig{
		TypeMeta:       metav1.TypeMeta{APIVersion: "x/v1", Kind: "K"},
		Port:           10250,
		Address:        "0.0.0.0",
		Ratio:          2,
		ClusterDNS:     []string{"10.96.0.10", "fd00::a"},
		Labels:         map[string]string{"zone": "a", "rack": "1"},
		Taints:         []taint{{Key: "k", Effect: "NoSchedule"}},
		Authentication: authn{Webhook: webhook{Enabled: &yes, CacheTTL: metav1.Duration{Duration: 2 * time.Minute}}},
		Limit:          &limit,
	}
	tests := []struct{ name, data string }{
		{"yaml", `
apiVersion: x/v1
kind: K
port: 10250
address: 0.0.0.0
ratio: 2
clusterDNS: [10.96.0.10, "fd00::a"]
nodeLabels:
  zone: a
  rack: "1"
registerWithTaints:
- key: k
  effect: NoSchedule
authentication:
  webhook:
    enabled: true
    cacheTTL: 2m
podPidsLimit: -1
`},
		{"json with tabs", "{\n\t\"apiVersion\": \"x/v1\", \"kind\": \"K\", \"port\": 10250, \"address\": \"0.0.0.0\", \"ratio\": 2.0,\n\t\"clusterDNS\": [\"10.96.0.10\", \"fd00::a\"], \"nodeLabels\": {\"zone\": \"a\", \"rack\": \"1\"},\n\t\"registerWithTaints\": [{\"key\": \"k\", \"effect\": \"NoSchedule\"}],\n\t\"authentication\": {\"webhook\": {\"enabled\": true, \"cacheTTL\": \"2m\"}}, \"podPidsLimit\": -1\n}\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, problems := problemsOf(t, tc.data)
			if len(problems) != 0 {
				t.Fatalf("unexpected problems: %v", problems)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

func TestDecodeProblems(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []Problem // Message is matched as a substring
	}{
		{"unknown top-level field", "port: 1\nbogus: 2\n", []Problem{{Field: "bogus", Line: 2, Message: "unknown field"}}},
		{"unknown nested field", "authentication:\n  webhook:\n    enabeld: true\n", []Problem{{Field: "authentication.webhook.enabeld", Line: 3, Message: "unknown field"}}},
		{"field names are case sensitive", "Port: 1\n", []Problem{{Field: "Port", Line: 1, Message: "unknown field"}}},
		{"duplicate field", "port: 1\naddress: a\nport: 2\n", []Problem{{Field: "port", Line: 3, Message: "duplicate field (first set at line 1)"}}},
		{"duplicate map key", "nodeLabels:\n  a: x\n  a: y\n", []Problem{{Field: "nodeLabels[a]", Line: 3, Message: "duplicate field"}}},
		{"string for integer", "port: abc\n", []Problem{{Field: "port", Line: 1, Message: `expected an integer, got string "abc"`}}},
		{"integer overflow", "port: 4294967296\n", []Problem{{Field: "port", Line: 1, Message: "out of range"}}},
		{"float for integer", "port: 1.5\n", []Problem{{Field: "port", Line: 1, Message: "expected an integer"}}},
		{"integer for string", "address: 5\n", []Problem{{Field: "address", Line: 1, Message: "expected a string, got integer 5"}}},
		{"scalar for list", "clusterDNS: 10.0.0.1\n", []Problem{{Field: "clusterDNS", Line: 1, Message: "expected a list"}}},
		{"bad list item", "clusterDNS:\n- a\n- [b]\n", []Problem{{Field: "clusterDNS[1]", Line: 3, Message: "expected a string, got a list"}}},
		{"bad duration", "authentication:\n  webhook:\n    cacheTTL: 2 minutes\n", []Problem{{Field: "authentication.webhook.cacheTTL", Line: 3, Message: `invalid value "2 minutes"`}}},
		{"unknown field in list item", "registerWithTaints:\n- key: a\n  efect: NoSchedule\n", []Problem{{Field: "registerWithTaints[0].efect", Line: 3, Message: "unknown field"}}},
		{"all problems at once", "bogus: 1\nport: x\nauthentication:\n  webhook:\n    enabled: maybe\n", []Problem{
			{Field: "bogus", Line: 1, Message: "unknown field"},
			{Field: "port", Line: 2, Message: "expected an integer"},
			{Field: "authentication.webhook.enabled", Line: 5, Message: "expected true or false"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, got := problemsOf(t, tc.data)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %v, want %d", len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Field != w.Field || g.Line != w.Line || !strings.Contains(g.Message, w.Message) {
					t.Errorf("problem %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestDecodeKeepsGoodFieldsNextToBadOnes(t *testing.T) {
	_, c, problems := problemsOf(t, "bogus: 1\nport: 7\naddress: [x]\nclusterDNS: [a]\n")
	if len(problems) != 2 {
		t.Fatalf("problems = %v, want 2", problems)
	}
	if c.Port != 7 || len(c.ClusterDNS) != 1 {
		t.Fatalf("good fields not decoded: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"empty", "  \n", "file is empty"},
		{"syntax", "port: [1\n", "not valid YAML"},
		{"two documents", "port: 1\n---\nport: 2\n", "more than one YAML document"},
		{"top-level list", "- a\n", "top level must be a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("cfg.yaml", []byte(tc.data))
			var ce *Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "cfg.yaml") {
				t.Fatalf("err = %v, want *Error naming cfg.yaml and containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadReportsFileAndLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: x/v1\nkind: K\nport: 1\nbogus: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c testConfig
	f, err := Load(path, &c)
	if err == nil || !strings.Contains(err.Error(), path+": line 4: bogus: unknown field") {
		t.Fatalf("err = %v", err)
	}
	if av, k := f.TypeMeta(); av != "x/v1" || k != "K" {
		t.Fatalf("TypeMeta = %q %q", av, k)
	}
	if !f.Has("port") || f.Has("address") || f.Line("port") != 3 {
		t.Fatalf("Has/Line wrong: port line %d", f.Line("port"))
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), &c); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file err = %v", err)
	}
}

func TestFieldProblems(t *testing.T) {
	f, _, decoding := problemsOf(t, "port: x\naddress: a\n")
	errs := field.ErrorList{
		field.Invalid(field.NewPath("port"), 0, "must be 1-65535"),
		field.Invalid(field.NewPath("address"), "a", "not an IP"),
		field.Required(field.NewPath("clusterDNS"), "needed"),
	}
	got := f.FieldProblems(errs, decoding)
	if len(got) != 2 {
		t.Fatalf("got %v; want the port error dropped (it already has a decoding problem)", got)
	}
	if got[0].Field != "address" || got[0].Line != 2 || got[1].Field != "clusterDNS" || got[1].Line != 0 {
		t.Fatalf("got %+v", got)
	}
	err := NewError("f.yaml", append(got, decoding...))
	want := "f.yaml: 3 problems:\n  line 1: port: wrong type"
	if !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "clusterDNS: Required value: needed") {
		t.Fatalf("error text:\n%s", err)
	}
}

func TestApplyChanged(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	port := fs.Int32("port", 10250, "")
	addr := fs.String("address", "0.0.0.0", "")
	if err := fs.Parse([]string{"--port=9"}); err != nil {
		t.Fatal(err)
	}
	c := testConfig{Port: 1, Address: "from-file"}
	o := Overrides[testConfig]{
		"port":    func(c *testConfig) { c.Port = *port },
		"address": func(c *testConfig) { c.Address = *addr },
	}
	if err := ApplyChanged(fs, &c, o); err != nil {
		t.Fatal(err)
	}
	if c.Port != 9 || c.Address != "from-file" {
		t.Fatalf("got port %d address %q: explicit flag must win, unset flag must not", c.Port, c.Address)
	}
	o["nope"] = func(*testConfig) {}
	if err := ApplyChanged(fs, &c, o); err == nil || !strings.Contains(err.Error(), "--nope") {
		t.Fatalf("undefined flag err = %v", err)
	}
}
