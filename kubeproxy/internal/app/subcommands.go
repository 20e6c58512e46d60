package app

import "github.com/spf13/cobra"

// subcommands returns kube-proxy's subcommands. The proxy core replaces this file to add `cleanup`.
func subcommands(_ *Options) []*cobra.Command { return nil }
