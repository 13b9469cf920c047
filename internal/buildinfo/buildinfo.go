// Package buildinfo says which build of a mimi-hub program is running: the
// module version and the version-control revision the go command recorded
// in the binary (runtime/debug.ReadBuildInfo), for -version and logs.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows about its own build.
type Info struct {
	// Version is the main module's version: a tag such as v1.2.0 when the
	// binary was built with `go install module@version`, a pseudo-version,
	// or "(devel)" when it was built from a checkout.
	Version string
	// Revision is the VCS commit the checkout was at ("" if the go
	// command recorded none, as in `go test` or with -buildvcs=false).
	Revision string
	// Time is the commit's time (RFC 3339), "" if unknown.
	Time string
	// Modified reports uncommitted changes in the checkout at build time.
	Modified bool
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's build information. A binary without
// any (not built by the go command in module mode) reports "unknown".
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown"}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from the go command's record.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// Line is the one-line description -version prints, e.g.
// "mimi-hub v1.2.0 revision 4f1c2ab9e0d1 (2026-11-02T10:00:00Z) go1.26.8";
// "+modified" follows a revision built with uncommitted changes.
func (i Info) Line(program string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", program, i.Version)
	if i.Revision != "" {
		fmt.Fprintf(&b, " revision %s", i.Revision)
		if i.Modified {
			b.WriteString("+modified")
		}
		if i.Time != "" {
			fmt.Fprintf(&b, " (%s)", i.Time)
		}
	} else {
		b.WriteString(" revision unknown")
	}
	if i.GoVersion != "" {
		fmt.Fprintf(&b, " %s", i.GoVersion)
	}
	return b.String()
}
