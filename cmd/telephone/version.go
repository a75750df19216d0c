package main

import (
	"fmt"
	"runtime/debug"
)

// version is the release version, set at build time with
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/telephone
//
// Without it, the module version recorded by `go install module@version` is used, else "dev".
var version = "dev"

// buildInfo describes the running binary (the /version endpoint and `telephone version`).
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
}

// readBuildInfo combines main.version with what the Go toolchain recorded in the binary.
func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Version: version, GoVersion: "unknown"}
	}
	return fromBuildInfo(version, bi)
}

func fromBuildInfo(ldVersion string, bi *debug.BuildInfo) buildInfo {
	out := buildInfo{Version: ldVersion, GoVersion: bi.GoVersion}
	if out.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		out.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Commit = s.Value
		case "vcs.time":
			out.CommitAt = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}

// String is the one-line form printed by `telephone version`.
func (b buildInfo) String() string {
	s := "telephone " + b.Version
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += "-dirty"
		}
		s += fmt.Sprintf(" (commit %s)", c)
	}
	return s + " " + b.GoVersion
}
