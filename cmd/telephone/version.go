package main

import (
	"fmt"
	"regexp"
	"runtime/debug"
)

// version and commit describe the release, set at build time (make build, the Dockerfile and
// .ci/run do this) with
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)" ./cmd/telephone
//
// They work with -buildvcs=false, which CI uses. Without them, the module version recorded by
// `go install module@version` is used (its pseudo-version carries the commit too), then the
// VCS stamp of a build inside a checkout, else "dev" and no commit.
var (
	version = "dev"
	commit  = ""
)

// modulePath is the module the binary belongs to (shown by /version).
const modulePath = "github.com/verastack/telephone"

// buildInfo describes the running binary (the /version endpoint and `telephone version`).
type buildInfo struct {
	Version   string `json:"version"`
	Module    string `json:"module"`
	Commit    string `json:"commit,omitempty"`
	CommitAt  string `json:"commit_time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
}

// readBuildInfo combines main.version and main.commit with what the Go toolchain recorded in
// the binary.
func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return buildInfo{Version: version, Module: modulePath, Commit: commit, GoVersion: "unknown"}
	}
	return fromBuildInfo(version, commit, bi)
}

// pseudoRev matches the commit at the end of a Go pseudo-version such as
// v0.0.0-20261130103000-0123456789ab (or v1.2.4-0.20261130103000-0123456789ab+dirty).
var pseudoRev = regexp.MustCompile(`\d{14}-([0-9a-f]{12})(\+.*)?$`)

func fromBuildInfo(ldVersion, ldCommit string, bi *debug.BuildInfo) buildInfo {
	out := buildInfo{Version: ldVersion, Module: modulePath, GoVersion: bi.GoVersion}
	if bi.Main.Path != "" {
		out.Module = bi.Main.Path
	}
	if out.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		out.Version = bi.Main.Version
	}
	if m := pseudoRev.FindStringSubmatch(out.Version); m != nil {
		out.Commit = m[1]
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
	if ldCommit != "" {
		out.Commit = ldCommit
	}
	return out
}

// String is the one-line form printed by `telephone version`.
func (b buildInfo) String() string {
	c := "unknown"
	if b.Commit != "" {
		c = b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += "-dirty"
		}
	}
	return fmt.Sprintf("telephone %s (commit %s) %s", b.Version, c, b.GoVersion)
}
