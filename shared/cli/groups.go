package cli

import "github.com/spf13/cobra"

// AddGroups adds a host program's commands to root under two headings of
// its help: the service commands (run the service itself) and the admin
// commands, which drive a running service over adminVia ("admin API",
// "admin socket").
func AddGroups(root *cobra.Command, adminVia string, service, admin []*cobra.Command) {
	root.AddGroup(&cobra.Group{ID: "service", Title: "Service commands:"}, &cobra.Group{ID: "admin", Title: "Admin commands (over the " + adminVia + "):"})
	for _, c := range service {
		c.GroupID = "service"
		root.AddCommand(c)
	}
	for _, c := range admin {
		c.GroupID = "admin"
		root.AddCommand(c)
	}
}
