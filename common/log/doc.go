// Package log builds the node agents' zap loggers from command-line options
// and routes klog, the logger client-go and other Kubernetes libraries write
// to, through the same zap core, so every line a binary prints has one format.
//
// Typical wiring in a command:
//
//	var opts log.Options
//	opts.AddFlags(cmd.Flags())
//	// after parsing:
//	if err := opts.Validate(); err != nil { ... }
//	logger, err := log.New(opts, "kubelet")
//
// Levels are either names (debug, info, warn, error) or a klog-style
// verbosity 0..10. Verbosity n enables klog's V(n) lines and logr's V(n),
// which zap receives as level -n and prints as "debug" with a "v" field.
// klog has no warning level in logr terms: klog.Warning lines arrive at info.
package log
