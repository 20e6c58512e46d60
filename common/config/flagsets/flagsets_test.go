package flagsets

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestHelpListsFlagsBySection(t *testing.T) {
	var s Sections
	s.Section("Config").String("config", "", "config file")
	s.Section("Logging").String("log-level", "info", "level")
	s.Section("Config").String("kubeconfig", "", "kubeconfig")
	root := &cobra.Command{Use: "tool", Long: "Tool does things.", Run: func(*cobra.Command, []string) {}}
	sub := &cobra.Command{Use: "cleanup", Short: "remove everything", Run: func(*cobra.Command, []string) {}}
	sub.Flags().Bool("dry-run", false, "only print")
	root.AddCommand(sub)
	s.Install(root)

	tests := []struct {
		name    string
		args    []string
		want    []string // in this order
		notWant []string
	}{
		{"root", []string{"--help"}, []string{"Tool does things.", "Usage:", "cleanup", "Config flags:", "--config", "--kubeconfig", "Logging flags:", "--log-level", "Other flags:", "--help"}, nil},
		{"subcommand keeps cobra's layout", []string{"cleanup", "--help"}, []string{"Usage:", "--dry-run"}, []string{"Config flags:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetArgs(tc.args)
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			text, pos := out.String(), 0
			for _, w := range tc.want {
				i := strings.Index(text[pos:], w)
				if i < 0 {
					t.Fatalf("help lacks %q after offset %d:\n%s", w, pos, text)
				}
				pos += i + len(w)
			}
			for _, w := range tc.notWant {
				if strings.Contains(text, w) {
					t.Fatalf("help contains %q:\n%s", w, text)
				}
			}
		})
	}
}
