// Package cli holds the command-line conventions the Prewarm binaries
// (prewarm-imds, prewarm-agent, prewarm-pool) share, so that an operator
// meets one set of them: the exit codes, error messages that say what
// failed and what to do, --output table|json, version and --version,
// flags also from environment variables and an optional config file
// (precedence flag > environment > file > default), and shell completion.
// docs/cli.md is the user-facing description.
//
// It imports only the standard library, cobra and pflag, and nothing of
// the repository: it sits under shared/ beside the wire contract so that
// the agent, the IMDS and the pool can all import it without one half
// importing the other, and it holds no wire types and no behaviour of
// either half. Built with -tags man it also holds the hidden gen-man
// command that writes the man pages at package time (cobra/doc), which
// the shipped binaries leave out.
package cli
