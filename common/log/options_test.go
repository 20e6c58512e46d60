package log

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"k8s.io/klog/v2"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string // substring; empty means valid
	}{
		{name: "zero value means info/text", opts: Options{}},
		{name: "names", opts: Options{Level: "warn", Format: "json"}},
		{name: "upper case name", opts: Options{Level: "DEBUG", Format: "text"}},
		{name: "verbosity", opts: Options{Level: "10"}},
		{name: "unknown level", opts: Options{Level: "loud"}, wantErr: `--log-level/-v: "loud"`},
		{name: "verbosity too high", opts: Options{Level: "11"}, wantErr: "--log-level/-v: verbosity 11 out of range"},
		{name: "negative verbosity", opts: Options{Level: "-1"}, wantErr: "--log-level/-v"},
		{name: "unknown format", opts: Options{Format: "yaml"}, wantErr: `--logging-format "yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAddFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    Options
		wantErr string
	}{
		{name: "defaults", args: nil, want: Options{Level: "info", Format: "text"}},
		{name: "log-level and format", args: []string{"--log-level=debug", "--logging-format=json"}, want: Options{Level: "debug", Format: "json"}},
		{name: "short -v", args: []string{"-v", "4"}, want: Options{Level: "4", Format: "text"}},
		{name: "long --v", args: []string{"--v=3"}, want: Options{Level: "3", Format: "text"}},
		{name: "last one wins: -v after --log-level", args: []string{"--log-level=error", "-v=2"}, want: Options{Level: "2", Format: "text"}},
		{name: "last one wins: --log-level after -v", args: []string{"-v=2", "--log-level=warn"}, want: Options{Level: "warn", Format: "text"}},
		{name: "-v must be a number", args: []string{"-v=debug"}, wantErr: `invalid argument "debug" for "-v, --v"`},
		{name: "-v out of range", args: []string{"-v=12"}, wantErr: "0..10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			err := fs.Parse(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			if o != tt.want {
				t.Fatalf("after Parse(%q) options = %+v, want %+v", tt.args, o, tt.want)
			}
		})
	}
}

func TestWithFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want Options
	}{
		{"file's verbosity and format without flags", nil, Options{Level: "3", Format: "json"}},
		{"--log-level wins", []string{"--log-level=error"}, Options{Level: "error", Format: "json"}},
		{"-v wins", []string{"-v=5"}, Options{Level: "5", Format: "json"}},
		{"--logging-format alone keeps the file's verbosity", []string{"--logging-format=text"}, Options{Level: "3", Format: "json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			// The file's format is passed as loaded: the commands copy --logging-format into it.
			if got := o.WithFile(fs, "json", 3); got != tt.want {
				t.Fatalf("WithFile after %q = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	if _, err := New(Options{Format: "xml"}, "test"); err == nil || !strings.Contains(err.Error(), "--logging-format") {
		t.Fatalf("New with a bad format = %v, want an error naming --logging-format", err)
	}
}

// Which lines come out at each level, from zap and from klog (client-go).
func TestLevels(t *testing.T) {
	type emitted struct{ zapDebug, zapInfo, zapWarn, klogInfo, klogV1, klogV4, klogError bool }
	tests := []struct {
		level string
		want  emitted
	}{
		{level: "error", want: emitted{klogError: true}},
		{level: "warn", want: emitted{zapWarn: true, klogError: true}},
		{level: "info", want: emitted{zapInfo: true, zapWarn: true, klogInfo: true, klogError: true}},
		{level: "0", want: emitted{zapInfo: true, zapWarn: true, klogInfo: true, klogError: true}},
		{level: "debug", want: emitted{zapDebug: true, zapInfo: true, zapWarn: true, klogInfo: true, klogV1: true, klogError: true}},
		{level: "4", want: emitted{zapDebug: true, zapInfo: true, zapWarn: true, klogInfo: true, klogV1: true, klogV4: true, klogError: true}},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			l, buf := newCaptured(t, Options{Level: tt.level, Format: FormatJSON}, "agent")
			l.Debug("zap-debug")
			l.Info("zap-info")
			l.Warn("zap-warn")
			klog.Info("klog-info")
			klog.V(1).Info("klog-v1")
			klog.V(4).InfoS("klog-v4", "key", "value")
			klog.ErrorS(nil, "klog-error")

			lines := map[string]map[string]any{}
			for _, line := range buf.jsonLines(t) {
				lines[line["msg"].(string)] = line
			}
			got := emitted{
				zapDebug: lines["zap-debug"] != nil, zapInfo: lines["zap-info"] != nil, zapWarn: lines["zap-warn"] != nil,
				klogInfo: lines["klog-info"] != nil, klogV1: lines["klog-v1"] != nil, klogV4: lines["klog-v4"] != nil,
				klogError: lines["klog-error"] != nil,
			}
			if got != tt.want {
				t.Fatalf("emitted %+v, want %+v\n%s", got, tt.want, buf.String())
			}
			if v4 := lines["klog-v4"]; v4 != nil {
				if v4["level"] != "debug" || v4["v"] != float64(4) || v4["key"] != "value" || v4["logger"] != "agent.klog" {
					t.Errorf("klog V(4) line = %v, want level debug, v 4, key value, logger agent.klog", v4)
				}
			}
			if info := lines["zap-info"]; info != nil && info["logger"] != "agent" {
				t.Errorf("zap line logger = %v, want agent", info["logger"])
			}
		})
	}
}

// klog is process-global: the logger built last receives client-go's lines.
func TestLastNewWinsForKlog(t *testing.T) {
	_, first := newCaptured(t, Options{Format: FormatJSON}, "first")
	_, second := newCaptured(t, Options{Format: FormatJSON}, "second")
	klog.InfoS("hello from klog")

	if strings.Contains(first.String(), "hello from klog") {
		t.Errorf("first logger still receives klog output: %s", first.String())
	}
	lines := second.jsonLines(t)
	if len(lines) != 1 || lines[0]["logger"] != "second.klog" {
		t.Fatalf("second logger got %v, want one line from logger second.klog", lines)
	}
}

func TestTextFormat(t *testing.T) {
	l, buf := newCaptured(t, Options{Level: "info", Format: FormatText}, "agent")
	l.Info("started", zap.Int("port", 10250))
	klog.InfoS("from klog", "node", "n1")

	out := strings.TrimSpace(buf.String())
	lines := strings.Split(out, "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), out)
	}
	for _, line := range lines {
		if json.Valid([]byte(line)) {
			t.Errorf("text format printed JSON: %s", line)
		}
		fields := strings.Split(line, "\t")
		if len(fields) < 5 || fields[1] != "info" {
			t.Errorf("line %q: want tab-separated ts, level info, logger, caller, msg", line)
		}
	}
	if !strings.Contains(lines[0], "\tagent\t") || !strings.Contains(lines[0], "started") {
		t.Errorf("zap line = %q, want logger agent and msg started", lines[0])
	}
	if !strings.Contains(lines[1], "\tagent.klog\t") || !strings.Contains(lines[1], `"node": "n1"`) {
		t.Errorf("klog line = %q, want logger agent.klog and its key/values", lines[1])
	}
}
