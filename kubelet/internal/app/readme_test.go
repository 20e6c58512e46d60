package app

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestReadmeListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../../api/README.md")
	if err != nil {
		t.Fatalf("api/README.md documents the flags: %v", err)
	}
	newCommand(nil).Flags().VisitAll(func(f *pflag.Flag) {
		want := "`--" + f.Name + "`"
		if len(f.Name) == 1 {
			want = "`-" + f.Name + "`"
		}
		if f.Name != "help" && !strings.Contains(string(readme), want) {
			t.Errorf("api/README.md does not list flag %s", want)
		}
	})
}
