package startup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/kubenode/kubenode/common/config"
	"github.com/kubenode/kubenode/common/log"
)

type testConfig struct {
	Port      int
	Name      string
	Format    string
	Verbosity uint32
}

// fileLoader stands in for a component's loader: the "file" sets Port 1, Name "file" and
// verbosity 2, then the override runs, as the real loaders do before defaulting.
func fileLoader(warnings []string, err error) func(string, func(*testConfig) error) (*testConfig, []string, error) {
	return func(_ string, override func(*testConfig) error) (*testConfig, []string, error) {
		if err != nil {
			return nil, nil, err
		}
		c := &testConfig{Port: 1, Name: "file", Format: log.FormatJSON, Verbosity: 2}
		if err := override(c); err != nil {
			return nil, warnings, err
		}
		return c, warnings, nil
	}
}

func setup(t *testing.T, args []string, load func(string, func(*testConfig) error) (*testConfig, []string, error)) Config[testConfig] {
	t.Helper()
	var (
		port    int
		name    string
		logOpts log.Options
	)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.IntVar(&port, "port", 0, "")
	fs.StringVar(&name, "name", "", "")
	logOpts.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Config[testConfig]{
		Component:  "test",
		ConfigFile: "/etc/test.yaml",
		Flags:      fs,
		Overrides: config.Overrides[testConfig]{
			"port": func(c *testConfig) { c.Port = port },
			"name": func(c *testConfig) { c.Name = name },
		},
		LogOptions: logOpts,
		LoadFile:   load,
		Logging:    func(c *testConfig) (string, uint32) { return c.Format, c.Verbosity },
	}
}

// captureStderr points os.Stderr at a file while fn runs (log.New writes there) and returns
// what was written.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stderr
	os.Stderr = f
	defer func() { os.Stderr = saved }()
	fn()
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name                string
		args                []string
		wantPort            int
		wantName            string
		wantDebug, wantInfo bool
	}{
		{"file values and the file's verbosity without flags", nil, 1, "file", true, true},
		{"a set flag overrides its field only", []string{"--port=9"}, 9, "file", true, true},
		{"a flag set to its zero value still overrides", []string{"--name="}, 1, "", true, true},
		{"--log-level wins over the file's verbosity", []string{"--log-level=error"}, 1, "file", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, logger, err := Load(setup(t, tc.args, fileLoader(nil, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Port != tc.wantPort || cfg.Name != tc.wantName {
				t.Fatalf("config = %+v, want port %d name %q", cfg, tc.wantPort, tc.wantName)
			}
			if got := logger.Core().Enabled(zap.DebugLevel); got != tc.wantDebug {
				t.Fatalf("debug enabled = %v, want %v", got, tc.wantDebug)
			}
			if got := logger.Core().Enabled(zap.InfoLevel); got != tc.wantInfo {
				t.Fatalf("info enabled = %v, want %v", got, tc.wantInfo)
			}
		})
	}
}

func TestLoadReturnsLoaderErrorUnchanged(t *testing.T) {
	want := errors.New("/etc/test.yaml: 2 problems: ...")
	cfg, logger, err := Load(setup(t, nil, fileLoader(nil, want)))
	if err != want || cfg != nil || logger != nil {
		t.Fatalf("Load = %v, %v, %v; want nil, nil and the loader's error itself", cfg, logger, err)
	}
}

func TestLoadLogsIgnoredFields(t *testing.T) {
	var err error
	out := captureStderr(t, func() {
		_, _, err = Load(setup(t, nil, fileLoader([]string{"readOnlyPort: not supported, ignored"}, nil)))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"msg":"configuration field ignored"`, `"config":"/etc/test.yaml"`, `"detail":"readOnlyPort: not supported, ignored"`, `"logger":"test"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
