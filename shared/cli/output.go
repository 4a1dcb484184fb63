package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// Output formats of the read commands.
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// Output is the value of a read command's --output flag.
type Output struct{ format string }

// AddOutputFlag adds --output table|json (-o) to cmd, table by default,
// with its completion, and --json as a hidden shorthand for --output json.
func AddOutputFlag(cmd *cobra.Command) *Output {
	return AddOutputFlagDefault(cmd, OutputTable)
}

// AddOutputFlagDefault is AddOutputFlag with another default (json for a
// command that shows a document).
func AddOutputFlagDefault(cmd *cobra.Command, def string) *Output {
	o := &Output{format: def}
	cmd.Flags().VarP(o, "output", "o", "output format: table or json (json is stable: docs/cli.md)")
	cmd.Flags().Var(jsonShorthand{o}, "json", "same as --output json")
	cmd.Flags().Lookup("json").NoOptDefVal = "true"
	cmd.Flags().MarkHidden("json")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{OutputTable, OutputJSON}, cobra.ShellCompDirectiveNoFileComp))
	return o
}

func (o *Output) String() string { return o.format }
func (o *Output) Type() string   { return "format" }

// Set takes table or json.
func (o *Output) Set(v string) error {
	switch v {
	case OutputTable, OutputJSON:
		o.format = v
		return nil
	case "text": // prewarm-pool's earlier name of table
		o.format = OutputTable
		return nil
	}
	return fmt.Errorf("want table or json, got %q", v)
}

// JSON reports whether JSON was asked for.
func (o *Output) JSON() bool { return o.format == OutputJSON }

type jsonShorthand struct{ o *Output }

func (j jsonShorthand) String() string { return "false" }
func (j jsonShorthand) Type() string   { return "bool" }
func (j jsonShorthand) Set(v string) error {
	switch v {
	case "true", "1":
		j.o.format = OutputJSON
	case "false", "0":
		j.o.format = OutputTable
	default:
		return fmt.Errorf("want true or false, got %q", v)
	}
	return nil
}

// WriteJSON writes v as indented JSON (two spaces, HTML characters left
// as they are) and a newline: the form of every --output json.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// Table writes rows under header, columns aligned with two spaces between
// them, an empty cell as "-".
func Table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			if c == "" {
				c = "-"
			}
			// A tab or newline would break the columns; other control
			// characters are a guest's to send (its error text) and
			// must not reach the operator's terminal as escapes.
			cells[i] = Printable(strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(c))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// Printable returns s with every control character (C0 but tab, DEL, C1)
// and invalid UTF-8 shown as a \xNN or \u escape, so text that came from a
// guest (a report's error, a step's name) prints as text: an escape
// sequence in it would otherwise drive the operator's terminal (move the
// cursor over other rows, set the window title, write the clipboard).
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r != '\t' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r != '\t' && (r < 0x20 || r == 0x7f):
			fmt.Fprintf(&b, "\\x%02x", r)
		case r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
