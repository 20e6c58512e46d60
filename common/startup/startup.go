// Package startup is what both node agents do between parsing their flags and running: load the
// configuration file with the flags the user set applied over it, build the logger the loaded
// configuration asks for, and log the file's ignored fields through it.
package startup

import (
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/kubenode/kubenode/common/config"
	"github.com/kubenode/kubenode/common/log"
)

// Config is one command's part of start-up; T is its configuration type.
type Config[T any] struct {
	// Component names the logger, e.g. "kubelet".
	Component string
	// ConfigFile is the --config path; empty when the configuration comes from flags alone.
	ConfigFile string
	// Flags are the parsed command-line flags; only those the user set override the file.
	Flags *pflag.FlagSet
	// Overrides copy each flag into the configuration.
	Overrides config.Overrides[T]
	// LogOptions are the logging flags as parsed.
	LogOptions log.Options
	// LoadFile loads, overrides, defaults and validates (the component's config package).
	LoadFile func(path string, override func(*T) error) (*T, []string, error)
	// Logging returns the loaded configuration's log format and verbosity.
	Logging func(*T) (format string, verbosity uint32)
}

// Load returns the final configuration and the logger to run with. Errors are the loader's and
// the logger's, unchanged: they already name the file, field or flag.
func Load[T any](c Config[T]) (*T, *zap.Logger, error) {
	cfg, warnings, err := c.LoadFile(c.ConfigFile, func(cfg *T) error {
		return config.ApplyChanged(c.Flags, cfg, c.Overrides)
	})
	if err != nil {
		return nil, nil, err
	}
	format, verbosity := c.Logging(cfg)
	logger, err := log.New(c.LogOptions.WithFile(c.Flags, format, verbosity), c.Component)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range warnings {
		logger.Warn("configuration field ignored", zap.String("config", c.ConfigFile), zap.String("detail", w))
	}
	return cfg, logger, nil
}
