package cli

import (
	"embed"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// The help of every command is a text file in help/, named after the
// command: its usage line first, its one-line summary second, and after a
// blank line its description. Kept apart from the code, the words can be
// reviewed as words.
//
//go:embed help/*.txt
var helpFiles embed.FS

// newCommand makes the command whose help is help/NAME.txt.
func newCommand(name string, args cobra.PositionalArgs, run func(*cobra.Command, []string) error) *cobra.Command {
	cmd := &cobra.Command{Args: args, RunE: run}
	text, err := helpFiles.ReadFile("help/" + name + ".txt")
	if err != nil {
		// Only a build without the file can get here; TestEveryCommandHasHelp
		// catches it.
		panic(fmt.Sprintf("kubeha: no help for command %s: %v", name, err))
	}
	head, long, _ := strings.Cut(string(text), "\n\n")
	cmd.Use, cmd.Short, _ = strings.Cut(head, "\n")
	cmd.Short = strings.TrimSpace(cmd.Short)
	cmd.Long = strings.TrimSpace(long)
	return cmd
}

// addFileFlag adds -f, the cluster spec the command reads, and requires it
// unless optional.
func addFileFlag(cmd *cobra.Command, file *string, usage string, optional bool) {
	cmd.Flags().StringVarP(file, "file", "f", "", usage)
	if !optional {
		_ = cmd.MarkFlagRequired("file")
	}
}

// checkOutput refuses an -o value the command does not print.
func checkOutput(output string, formats ...string) error {
	for _, f := range formats {
		if output == f {
			return nil
		}
	}
	return fmt.Errorf("-o %s: choose %s", output, strings.Join(formats, " or "))
}
