// Package flagsets groups a command's flags into named sections so --help reads like a manual
// ("Config flags", "Logging flags", ...) instead of one long alphabetical list.
package flagsets

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Sections is an ordered set of named flag sets.
type Sections struct {
	order []string
	sets  map[string]*pflag.FlagSet
}

// Section returns the flag set for name, creating it (after all existing ones) on first use.
func (s *Sections) Section(name string) *pflag.FlagSet {
	if s.sets == nil {
		s.sets = map[string]*pflag.FlagSet{}
	}
	fs, ok := s.sets[name]
	if !ok {
		fs = pflag.NewFlagSet(name, pflag.ContinueOnError)
		s.sets[name] = fs
		s.order = append(s.order, name)
	}
	return fs
}

// Install adds every section's flags to cmd and makes its usage and help print them by section.
func (s *Sections) Install(cmd *cobra.Command) {
	for _, name := range s.order {
		cmd.Flags().AddFlagSet(s.sets[name])
	}
	// Subcommands inherit these functions; they keep cobra's own layout.
	defaultUsage, defaultHelp := cmd.UsageFunc(), cmd.HelpFunc()
	cmd.SetUsageFunc(func(c *cobra.Command) error {
		if c != cmd {
			return defaultUsage(c)
		}
		s.printUsage(c.OutOrStderr(), c)
		return nil
	})
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		if c != cmd {
			defaultHelp(c, args)
			return
		}
		out := c.OutOrStdout()
		if c.Long != "" {
			fmt.Fprintln(out, strings.TrimSpace(c.Long))
			fmt.Fprintln(out)
		}
		s.printUsage(out, c)
	})
}

func (s *Sections) printUsage(w io.Writer, c *cobra.Command) {
	fmt.Fprintf(w, "Usage:\n  %s [flags]\n", c.CommandPath())
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "  %s [command]\n\nCommands:\n", c.CommandPath())
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				fmt.Fprintf(w, "  %-12s %s\n", sub.Name(), sub.Short)
			}
		}
	}
	for _, name := range s.order {
		fs := s.sets[name]
		if !fs.HasFlags() {
			continue
		}
		fmt.Fprintf(w, "\n%s flags:\n%s", name, fs.FlagUsagesWrapped(100))
	}
	// Flags added to the command directly (cobra's own --help) are listed last.
	other := pflag.NewFlagSet("other", pflag.ContinueOnError)
	c.Flags().VisitAll(func(f *pflag.Flag) {
		for _, fs := range s.sets {
			if fs.Lookup(f.Name) != nil {
				return
			}
		}
		other.AddFlag(f)
	})
	if other.HasFlags() {
		fmt.Fprintf(w, "\nOther flags:\n%s", other.FlagUsagesWrapped(100))
	}
}
