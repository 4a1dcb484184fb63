package cli

import (
	"errors"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestCheckWait(t *testing.T) {
	cases := []struct {
		args    []string
		wait    bool
		until   string
		gen     int64
		timeout time.Duration
		want    string // "" for no error
	}{
		{nil, false, UntilProvisioned, 0, 0, ""},
		{[]string{"--wait", "--until", "any", "--timeout", "1m"}, true, UntilAny, 0, time.Minute, ""},
		{nil, false, "done", 0, 0, `--until "done": want provisioned, partial-ready, failed or any`},
		{[]string{"--until", "failed"}, false, UntilFailed, 0, 0, "--until goes with --wait"},
		{[]string{"--timeout", "1m"}, false, UntilProvisioned, 0, time.Minute, "--timeout goes with --wait"},
		{[]string{"--wait", "--generation", "-1"}, true, UntilProvisioned, -1, 0, "--generation and --timeout must not be negative"},
		{[]string{"--wait", "--timeout", "-1s"}, true, UntilProvisioned, 0, -time.Second, "--generation and --timeout must not be negative"},
	}
	for _, c := range cases {
		f := pflag.NewFlagSet("status", pflag.ContinueOnError)
		f.Bool("wait", false, "")
		f.String("until", UntilProvisioned, "")
		f.Int64("generation", 0, "")
		f.Duration("timeout", 0, "")
		if err := f.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := CheckWait(f, c.wait, c.until, c.gen, c.timeout, "until", "generation", "timeout")
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: %v", c.args, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != ExitUsage || e.Msg != c.want {
			t.Errorf("%q: got %v, want usage error %q", c.args, err, c.want)
		}
	}
}
