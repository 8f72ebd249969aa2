package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X github.com/kubeha/kubeha/cmd/kubeha/cli.version=v0.1.0".
var version = ""

// Version is the kubeha version: the one set at build time, else the module
// version, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newVersionCommand(streams IOStreams) *cobra.Command {
	return newCommand("version", cobra.NoArgs, func(*cobra.Command, []string) error {
		revision := ""
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					revision = " " + s.Value
				}
			}
		}
		fmt.Fprintf(streams.Out, "kubeha %s%s %s %s/%s\n", Version(), revision, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	})
}
