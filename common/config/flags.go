package config

import (
	"fmt"
	"sort"

	"github.com/spf13/pflag"
)

// Overrides maps a flag name to the function that copies that flag's parsed value into the
// configuration object.
type Overrides[T any] map[string]func(*T)

// ApplyChanged runs the override of every flag the user set explicitly on the command line, so those
// flags win over the config file while flags left at their defaults do not touch the file's values.
// It fails when an override names a flag that fs does not define: that is a programming error that
// would otherwise silently drop the flag.
func ApplyChanged[T any](fs *pflag.FlagSet, cfg *T, o Overrides[T]) error {
	names := make([]string, 0, len(o))
	for name := range o {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("override for undefined flag --%s", name)
		}
		if f.Changed {
			o[name](cfg)
		}
	}
	return nil
}
