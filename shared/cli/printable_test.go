package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestPrintable(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text, tabs\tkept", "plain text, tabs\tkept"},
		{"ünïcödé ✓", "ünïcödé ✓"},
		{"\x1b]52;c;aGk=\x07", `\x1b]52;c;aGk=\x07`},
		{"hide\x1b[2Jrows", `hide\x1b[2Jrows`},
		{"del\x7f", `del\x7f`},
		{"c1\u009bcsi", `c1\u009bcsi`},
		{"bad \xff utf8", `bad \xff utf8`},
	} {
		if got := Printable(c.in); got != c.want {
			t.Errorf("Printable(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// A guest's error text reaches the operator's terminal through table cells
// and an error's detail lines: neither may carry an escape sequence.
func TestGuestTextReachesNoTerminalEscape(t *testing.T) {
	var out bytes.Buffer
	if err := Table(&out, []string{"STATE", "LAST ERROR"}, [][]string{{"failed", "x\x1b[2Jy"}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsRune(out.String(), 0x1b) || !strings.Contains(out.String(), `x\x1b[2Jy`) {
		t.Errorf("table: %q", out.String())
	}
	root := &cobra.Command{Use: "prog", SilenceErrors: true, SilenceUsage: true, RunE: func(*cobra.Command, []string) error {
		return &Error{Code: ExitGuestFailed, Msg: "guest failed \x1b]0;title\x07", Detail: "users: \x1b[31mred\x1b[0m\nsecond line"}
	}}
	var stderr bytes.Buffer
	if code := Execute(root, nil, strings.NewReader(""), &out, &stderr); code != ExitGuestFailed {
		t.Fatalf("exit %d", code)
	}
	if strings.ContainsRune(stderr.String(), 0x1b) || strings.ContainsRune(stderr.String(), 0x07) {
		t.Errorf("stderr carries a control character: %q", stderr.String())
	}
	if !strings.Contains(stderr.String(), "  second line\n") {
		t.Errorf("detail lines lost: %q", stderr.String())
	}
}
