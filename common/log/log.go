package log

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/go-logr/zapr"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

const (
	// FormatJSON writes one JSON object per line.
	FormatJSON = "json"
	// FormatText writes zap's console format: tab-separated, human-readable.
	FormatText = "text"

	// DefaultLevel and DefaultFormat apply when the fields are empty.
	DefaultLevel  = "info"
	DefaultFormat = FormatText

	// MaxVerbosity is the largest klog-style verbosity accepted.
	MaxVerbosity = 10
)

// Options selects the level and the format of a logger.
type Options struct {
	// Level is debug, info, warn or error, or a klog-style verbosity "0".."10"
	// (0 is info; n > 0 also enables V(1)..V(n) lines). Empty means info.
	Level string
	// Format is json or text. Empty means text.
	Format string
}

// AddFlags registers --log-level, -v/--v and --logging-format. --log-level
// and -v both set Level, so the one given last on the command line wins.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	if o.Level == "" {
		o.Level = DefaultLevel
	}
	if o.Format == "" {
		o.Format = DefaultFormat
	}
	fs.StringVar(&o.Level, "log-level", o.Level,
		"log level: debug, info, warn, error, or a verbosity 0..10 like -v")
	fs.VarP(&verbosityFlag{level: &o.Level}, "v", "v",
		"log verbosity 0..10 (klog style); sets the log level")
	fs.StringVar(&o.Format, "logging-format", o.Format, "log format: json or text")
}

// Validate reports the first field that is wrong, naming its flag.
func (o Options) Validate() error {
	if _, _, err := parseLevel(o.Level); err != nil {
		return fmt.Errorf("invalid --log-level/-v: %w", err)
	}
	switch o.Format {
	case "", FormatJSON, FormatText:
	default:
		return fmt.Errorf("invalid --logging-format %q: want %s or %s", o.Format, FormatJSON, FormatText)
	}
	return nil
}

// WithFile returns the options to log with once a configuration file is loaded: the file's
// format (which holds --logging-format when that was set, as the commands apply it as an
// override) and its verbosity, unless --log-level or -v was set on fs: a level given on the
// command line wins over the file's.
func (o Options) WithFile(fs *pflag.FlagSet, format string, verbosity uint32) Options {
	out := Options{Level: strconv.FormatUint(uint64(verbosity), 10), Format: format}
	if fs.Changed("log-level") || fs.Changed("v") {
		out.Level = o.Level
	}
	return out
}

// New returns a logger named component that writes to stderr, and makes klog
// write through it.
//
// klog is process-global and client-go logs only through it, so New has to
// touch that one global: it points klog at this logger and sets klog's
// verbosity. Each call replaces what an earlier call set (the last call
// wins), so a command may build a provisional logger early and its final one
// after loading its config. Call New during start-up, before client-go runs:
// klog does not guard the swap against concurrent log calls.
func New(o Options, component string) (*zap.Logger, error) {
	return newWithSink(o, component, zapcore.Lock(os.Stderr))
}

// newWithSink is New with the output chosen by the caller (tests capture it).
func newWithSink(o Options, component string, sink zapcore.WriteSyncer) (*zap.Logger, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	level, verbosity, _ := parseLevel(o.Level)

	enc := zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      "caller",
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    encodeLevel,
		EncodeTime:     zapcore.ISO8601TimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	}
	var encoder zapcore.Encoder
	if o.Format == FormatJSON {
		encoder = zapcore.NewJSONEncoder(enc)
	} else {
		encoder = zapcore.NewConsoleEncoder(enc)
	}
	core := zapcore.NewCore(encoder, sink, level)
	base := zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.DPanicLevel), zap.ErrorOutput(sink))

	if err := routeKlog(base.Named(component).Named("klog"), verbosity); err != nil {
		return nil, err
	}
	return base.Named(component), nil
}

// routeKlog sends klog's output to l and makes klog's own V(n) checks agree
// with l's level.
func routeKlog(l *zap.Logger, verbosity int) error {
	// zapr adds "v" so lines from V(n) keep their verbosity in the output.
	logger := zapr.NewLoggerWithOptions(l, zapr.LogInfoLevel("v"))
	// ContextualLogger lets klog.FromContext/Background hand out this logger
	// directly rather than a klog wrapper that routes back into it. Direct
	// V(n) calls are then filtered by the zap level and klog.V(n) by klog's
	// -v; both are set from the same Options, so they agree.
	klog.SetLoggerWithOptions(logger, klog.ContextualLogger(true), klog.FlushLogger(func() { _ = l.Sync() }))

	return setKlogVerbosity(verbosity)
}

// setKlogVerbosity sets klog's -v. klog filters V(n) itself before calling
// the logger, and its threshold is reachable only through its flags.
func setKlogVerbosity(verbosity int) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	klog.InitFlags(fs)
	if err := fs.Set("v", strconv.Itoa(verbosity)); err != nil {
		return fmt.Errorf("setting klog verbosity: %w", err)
	}
	return nil
}

// encodeLevel prints zap levels below debug (logr V(2) and up) as "debug";
// the "v" field carries the verbosity.
func encodeLevel(l zapcore.Level, enc zapcore.PrimitiveArrayEncoder) {
	if l < zapcore.DebugLevel {
		l = zapcore.DebugLevel
	}
	zapcore.LowercaseLevelEncoder(l, enc)
}

// parseLevel turns a Level string into the zap level to enable and the klog
// verbosity. Names map to verbosity 0, except debug which is verbosity 1
// (logr V(1) is zap's debug level).
func parseLevel(s string) (zapcore.Level, int, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return zapcore.InfoLevel, 0, nil
	case "debug":
		return zapcore.DebugLevel, 1, nil
	case "warn", "warning":
		return zapcore.WarnLevel, 0, nil
	case "error":
		return zapcore.ErrorLevel, 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: want debug, info, warn, error or a verbosity 0..%d", s, MaxVerbosity)
	}
	if v < 0 || v > MaxVerbosity {
		return 0, 0, fmt.Errorf("verbosity %d out of range 0..%d", v, MaxVerbosity)
	}
	return zapcore.Level(-v), v, nil
}

// verbosityFlag is -v: it checks the number and stores it in Options.Level.
type verbosityFlag struct{ level *string }

func (f *verbosityFlag) String() string {
	if f.level == nil {
		return "0"
	}
	if _, err := strconv.Atoi(*f.level); err == nil {
		return *f.level
	}
	return "0"
}

func (f *verbosityFlag) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v > MaxVerbosity {
		return fmt.Errorf("want an integer 0..%d, got %q", MaxVerbosity, s)
	}
	*f.level = strconv.Itoa(v)
	return nil
}

func (f *verbosityFlag) Type() string { return "int" }
