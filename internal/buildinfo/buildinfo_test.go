package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"tagged clean build", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "4f1c2ab9"}, {Key: "vcs.time", Value: "2026-11-02T10:00:00Z"}, {Key: "vcs.modified", Value: "false"},
		}}, "mimi-hub v1.2.0 revision 4f1c2ab9 (2026-11-02T10:00:00Z) go1.26.8"},
		{"checkout with changes", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "4f1c2ab9"}, {Key: "vcs.modified", Value: "true"},
		}}, "mimi-hub (devel) revision 4f1c2ab9+modified go1.26.8"},
		{"no VCS stamp", debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{{Key: "-buildvcs", Value: "false"}}},
			"mimi-hub (devel) revision unknown go1.26.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromBuildInfo(&tc.bi).Line("mimi-hub"); got != tc.want {
				t.Fatalf("Line = %q\nwant   %q", got, tc.want)
			}
		})
	}
}

// TestReadInTest: a test binary has build information (without VCS
// stamps); Read must not invent any.
func TestReadInTest(t *testing.T) {
	i := Read()
	if i.GoVersion == "" || i.Version == "" {
		t.Fatalf("Read() = %+v: want the toolchain and a version", i)
	}
}
