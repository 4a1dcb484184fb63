//go:build man

package cli

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// With -tags man, every root gets the hidden gen-man command: packaging
// runs it to write one man page per command (section 1 for the client
// commands, as cobra/doc names them) into a directory.
func init() {
	extraCommands = append(extraCommands, func() *cobra.Command {
		return &cobra.Command{
			Use:    "gen-man DIR",
			Short:  "Write the man pages into DIR",
			Hidden: true,
			Args:   ExactArgs(1, "DIR"),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := os.MkdirAll(args[0], 0o755); err != nil {
					return err
				}
				root := cmd.Root()
				root.DisableAutoGenTag = true
				// Each page's title is its command path; the date comes from
				// SOURCE_DATE_EPOCH when set (reproducible packages).
				hdr := &doc.GenManHeader{Section: "8", Source: "Prewarm " + root.Version, Manual: "Prewarm"}
				return doc.GenManTree(root, hdr, args[0])
			},
		}
	})
}
