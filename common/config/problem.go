package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration file, located by field path and line.
type Problem struct {
	// Field is the JSON field path, e.g. "authentication.webhook.cacheTTL" or "clusterDNS[1]".
	// Empty for problems with the file as a whole.
	Field string
	// Line is the 1-based line where the field is written; 0 when the field is not in the file.
	Line int
	// Message says what is wrong.
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error lists every problem found in one configuration file, so a user fixes them all in one pass.
type Error struct {
	// File is the path of the file, or a description such as "flags" when there is no file.
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if len(e.Problems) == 1 {
		b.WriteString(": ")
		b.WriteString(e.Problems[0].String())
		return b.String()
	}
	fmt.Fprintf(&b, ": %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// NewError returns nil when there are no problems, otherwise an *Error with the problems in file
// order (problems without a line last).
func NewError(file string, problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	ps := append([]Problem(nil), problems...)
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if (li == 0) != (lj == 0) {
			return lj == 0
		}
		return li < lj
	})
	return &Error{File: file, Problems: ps}
}
