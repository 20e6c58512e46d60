package app

import "github.com/spf13/cobra"

// subcommands returns kube-proxy's subcommands.
func subcommands(_ *Options) []*cobra.Command { return []*cobra.Command{newCleanupCommand()} }
