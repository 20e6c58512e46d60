// Package version reports the build's version, commit and date. The values are stamped at link
// time by the Makefile (-X flags); a plain `go build` reports the module version from build info.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by -ldflags "-X github.com/kubenode/kubenode/common/version.gitVersion=...".
var (
	gitVersion = ""
	gitCommit  = ""
	buildDate  = ""
)

// Info describes one build of a binary.
type Info struct {
	Component string `json:"component"`
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build information for the named component.
func Get(component string) Info {
	info := Info{
		Component: component,
		Version:   gitVersion,
		Commit:    gitCommit,
		BuildDate: buildDate,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "v0.0.0-dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	if info.BuildDate == "" {
		info.BuildDate = "unknown"
	}
	return info
}

// String renders the one line that --version prints.
func (i Info) String() string {
	return fmt.Sprintf("%s %s (commit %s, built %s, %s, %s)", i.Component, i.Version, i.Commit, i.BuildDate, i.GoVersion, i.Platform)
}
