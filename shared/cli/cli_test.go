package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// testRoot is a program "prog" with a serve command (config file) and a
// show command (output), recording what serve saw.
type seen struct {
	listen string
	level  string
	ifaces []string
}

func testRoot(got *seen) *cobra.Command {
	root := &cobra.Command{Use: "prog"}
	serve := &cobra.Command{Use: "serve", Args: NoArgs}
	serve.Flags().StringVar(&got.listen, "listen", "default:80", "")
	serve.Flags().StringVar(&got.level, "log-level", "info", "")
	serve.Flags().StringSliceVar(&got.ifaces, "guest-interface", nil, "")
	AddConfigFlag(serve)
	serve.RunE = func(*cobra.Command, []string) error { return nil }
	show := &cobra.Command{Use: "show ID", Args: ExactArgs(1, "ID")}
	out := AddOutputFlag(show)
	show.RunE = func(cmd *cobra.Command, args []string) error {
		switch args[0] {
		case "missing":
			return Errorf(ExitNotFound, "instance %q is not registered", args[0]).WithHint("list them")
		case "plain":
			return os.ErrClosed // an error of no code: 1
		}
		if out.JSON() {
			return WriteJSON(cmd.OutOrStdout(), map[string]string{"id": args[0]})
		}
		return Table(cmd.OutOrStdout(), []string{"ID", "NOTE"}, [][]string{{args[0], ""}})
	}
	root.AddCommand(serve, show)
	Setup(root, "PROG_", "1.2.3")
	return root
}

func execute(t *testing.T, args ...string) (code int, stdout, stderr string, got seen) {
	t.Helper()
	var o, e bytes.Buffer
	code = Execute(testRoot(&got), args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String(), got
}

// TestPrecedence: a flag wins over the environment, which wins over the
// config file, which wins over the default.
func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "serve.conf")
	if err := os.WriteFile(file, []byte("# settings\nlisten = file:1\n--log-level = \"debug\"\nguest-interface = vnet0\nguest-interface = vnet1,vnet2\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		env    map[string]string
		args   []string
		listen string
		level  string
		ifaces string
	}{
		{name: "defaults", listen: "default:80", level: "info"},
		{name: "file", args: []string{"--config", file}, listen: "file:1", level: "debug", ifaces: "vnet0,vnet1,vnet2"},
		{name: "config path from env", env: map[string]string{"PROG_CONFIG": file}, listen: "file:1", level: "debug", ifaces: "vnet0,vnet1,vnet2"},
		{name: "env over file", env: map[string]string{"PROG_LISTEN": "env:2", "PROG_GUEST_INTERFACE": "eth9"}, args: []string{"--config", file}, listen: "env:2", level: "debug", ifaces: "eth9"},
		{name: "env over default", env: map[string]string{"PROG_LOG_LEVEL": "warn"}, listen: "default:80", level: "warn"},
		{name: "flag over env and file", env: map[string]string{"PROG_LISTEN": "env:2"}, args: []string{"--config", file, "--listen", "flag:3", "--guest-interface", "x"}, listen: "flag:3", level: "debug", ifaces: "x"},
		{name: "unrelated variables", env: map[string]string{"PROG_OPTS": "--bogus", "PROG_NOSUCH": "1"}, listen: "default:80", level: "info"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, stderr, got := execute(t, append([]string{"serve"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got.listen != tt.listen || got.level != tt.level || strings.Join(got.ifaces, ",") != tt.ifaces {
				t.Errorf("listen %q level %q interfaces %q; want %q %q %q", got.listen, got.level, got.ifaces, tt.listen, tt.level, tt.ifaces)
			}
		})
	}
}

// TestConfigFileErrors: a bad file or variable is a usage error that names
// the file and line or the variable, and the rule.
func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{name: "unknown setting", args: []string{"--config", write("a", "listen = x\nlisen = y\n")}, want: []string{"a line 2", `unknown setting "lisen"`, "no --lisen flag"}},
		{name: "no equals", args: []string{"--config", write("b", "listen\n")}, want: []string{"b line 1", "want 'flag-name = value'"}},
		{name: "set twice", args: []string{"--config", write("c", "listen = a\nlisten = b\n")}, want: []string{"c line 2", "set twice (first on line 1)"}},
		{name: "bad quoting", args: []string{"--config", write("d", "listen = \"a\n")}, want: []string{"d line 1", "quoted value"}},
		{name: "config in config", args: []string{"--config", write("e", "config = x\n")}, want: []string{`unknown setting "config"`}},
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "nope")}, want: []string{"cannot read config file", "nope", notExist(t, filepath.Join(dir, "nope"))}},
		{name: "bad env value", env: map[string]string{"PROG_OUTPUT": "yaml"}, args: nil, want: []string{"PROG_OUTPUT", "want table or json"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"serve"}, tt.args...)
			if tt.env != nil {
				args = []string{"show", "x"}
			}
			code, _, stderr, _ := execute(t, args...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, ExitUsage, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
		})
	}
}

// TestExitCodesAndMessages: usage errors exit 2, a command's coded error
// its code with its hint, any other error 1; the message names the program
// once and carries no Go error chain of cobra's.
func TestExitCodesAndMessages(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"bogus"}, ExitUsage, []string{`prog: unknown command "bogus"`, "hint: run 'prog --help'"}},
		{[]string{"show"}, ExitUsage, []string{"prog: show wants ID (1 argument(s)), got 0", "hint: run 'prog show --help'"}},
		{[]string{"show", "a", "--nope"}, ExitUsage, []string{"prog: unknown flag: --nope", "hint: run 'prog show --help'"}},
		{[]string{"show", "a", "-o", "yaml"}, ExitUsage, []string{"want table or json"}},
		{[]string{"serve", "extra"}, ExitUsage, []string{`serve takes no arguments, got ["extra"]`}},
		{[]string{"show", "missing"}, ExitNotFound, []string{`prog: instance "missing" is not registered`, "hint: list them"}},
		{[]string{"show", "plain"}, ExitFailure, []string{"prog: file already closed"}},
		{[]string{"show", "a"}, ExitOK, nil},
		{[]string{"--help"}, ExitOK, nil},
	} {
		code, _, stderr, _ := execute(t, tt.args...)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d; stderr %q", tt.args, code, tt.code, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%q: stderr %q does not say %q", tt.args, stderr, w)
			}
		}
		if strings.Count(stderr, "prog:") > 1 {
			t.Errorf("%q: stderr names the program twice: %q", tt.args, stderr)
		}
	}
}

func TestOutput(t *testing.T) {
	_, out, _, _ := execute(t, "show", "a")
	if out != "ID  NOTE\na   -\n" {
		t.Errorf("table %q", out)
	}
	for _, args := range [][]string{{"show", "a", "-o", "json"}, {"show", "a", "--output=json"}, {"show", "a", "--json"}} {
		_, out, _, _ = execute(t, args...)
		if out != "{\n  \"id\": \"a\"\n}\n" {
			t.Errorf("%q: %q", args, out)
		}
	}
	if _, out, _, _ = execute(t, "show", "a", "-o", "text"); !strings.HasPrefix(out, "ID") {
		t.Errorf("-o text (prewarm-pool's name of table): %q", out)
	}
	t.Setenv("PROG_OUTPUT", "json")
	if _, out, _, _ = execute(t, "show", "a"); !strings.HasPrefix(out, "{") {
		t.Errorf("PROG_OUTPUT=json: %q", out)
	}
	if _, out, _, _ = execute(t, "show", "a", "-o", "table"); !strings.HasPrefix(out, "ID") {
		t.Errorf("-o table over PROG_OUTPUT=json: %q", out)
	}
}

func TestTableCells(t *testing.T) {
	var b bytes.Buffer
	Table(&b, []string{"A", "B"}, [][]string{{"x\ty", "line\nbreak"}, {"", "z"}})
	if want := "A    B\nx y  line break\n-    z\n"; b.String() != want {
		t.Errorf("%q, want %q", b.String(), want)
	}
}

func TestVersion(t *testing.T) {
	code, out, _, _ := execute(t, "version")
	if code != 0 || !strings.HasPrefix(out, "prog 1.2.3 (module ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
	_, out2, _, _ := execute(t, "--version")
	if out2 != out {
		t.Errorf("--version %q != version %q", out2, out)
	}
	_, out, _, _ = execute(t, "version", "-o", "json")
	var v VersionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Program != "prog" || v.Version != "1.2.3" || v.Commit == "" || v.GoVersion == "" {
		t.Errorf("version -o json: %q %v", out, err)
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, stderr, _ := execute(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "prog") {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", sh, code, len(out), stderr)
		}
	}
	// Completion of --output values (cobra's __complete protocol).
	_, out, _, _ := execute(t, "__complete", "show", "a", "--output", "")
	if !strings.Contains(out, "table\njson\n") {
		t.Errorf("--output completions %q", out)
	}
}

// TestDecide: every --until value against every state, before and at the
// generation.
func TestDecide(t *testing.T) {
	type res struct {
		done bool
		code int
	}
	states := []string{"starting", "waiting", "applying", "partial-ready", "provisioned", "failed"}
	want := map[string][]res{ // at generation 3 or later, by state
		UntilProvisioned:  {{}, {}, {}, {}, {true, ExitOK}, {true, ExitGuestFailed}},
		UntilPartialReady: {{}, {}, {}, {true, ExitOK}, {true, ExitOK}, {true, ExitGuestFailed}},
		UntilFailed:       {{}, {}, {}, {}, {}, {true, ExitOK}},
		UntilAny:          {{true, 0}, {true, 0}, {true, 0}, {true, 0}, {true, 0}, {true, ExitGuestFailed}},
	}
	for until, byState := range want {
		w := Wait{Until: until, Generation: 3}
		for i, st := range states {
			for _, gen := range []int64{3, 4} {
				done, code := w.Decide(st, gen)
				if done != byState[i].done || (done && code != byState[i].code) {
					t.Errorf("until %s, %s at generation %d: done %v code %d; want %v %d", until, st, gen, done, code, byState[i].done, byState[i].code)
				}
			}
			// An older generation never decides, except for any.
			if done, _ := w.Decide(st, 2); done != (until == UntilAny) {
				t.Errorf("until %s, %s at generation 2: done %v", until, st, done)
			}
		}
	}
	if err := CheckUntil("ready"); Code(err) != ExitUsage {
		t.Errorf("CheckUntil(ready): %v", err)
	}
}

// TestNoEnv: a flag marked NoEnv is not set by its environment variable;
// the command's other flags still are.
func TestNoEnv(t *testing.T) {
	var doc, sock string
	root := &cobra.Command{Use: "prog"}
	claim := &cobra.Command{Use: "claim", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	claim.Flags().StringVar(&doc, "config", "", "")
	claim.Flags().StringVar(&sock, "socket", "default.sock", "")
	NoEnv(claim, "config")
	root.AddCommand(claim)
	Setup(root, "PROG_", "1.2.3")
	t.Setenv("PROG_CONFIG", "/etc/prog/serve.yaml")
	t.Setenv("PROG_SOCKET", "env.sock")
	var o, e bytes.Buffer
	if code := Execute(root, []string{"claim"}, strings.NewReader(""), &o, &e); code != 0 {
		t.Fatalf("exit %d: %s", code, e.String())
	}
	if doc != "" || sock != "env.sock" {
		t.Errorf("config %q (want unset), socket %q (want env.sock)", doc, sock)
	}
	if code := Execute(root, []string{"claim", "--config", "doc.json"}, strings.NewReader(""), &o, &e); code != 0 || doc != "doc.json" {
		t.Errorf("--config doc.json: exit %d, config %q", code, doc)
	}
}

// TestWaitFlagsFromEnvironment: a --wait-only flag that the environment
// sets (PROG_TIMEOUT) is a default for waits, not a flag typed without
// --wait: a plain status runs; typed without --wait it is a usage error.
func TestWaitFlagsFromEnvironment(t *testing.T) {
	var (
		wait    bool
		until   string
		timeout time.Duration
		ran     bool
	)
	// A fresh command each time, as each process parses its command line
	// once (pflag keeps what an earlier parse set).
	execute := func(args ...string) (int, string) {
		wait, until, timeout, ran = false, "", 0, false
		root := &cobra.Command{Use: "prog"}
		st := &cobra.Command{Use: "status", Args: NoArgs}
		st.Flags().BoolVar(&wait, "wait", false, "")
		st.Flags().StringVar(&until, "until", UntilProvisioned, "")
		st.Flags().DurationVar(&timeout, "timeout", 0, "")
		st.RunE = func(cmd *cobra.Command, _ []string) error {
			if err := CheckWait(cmd.Flags(), wait, until, 0, timeout, "until", "timeout"); err != nil {
				return err
			}
			ran = true
			return nil
		}
		root.AddCommand(st)
		Setup(root, "PROG_", "1.2.3")
		var o, e bytes.Buffer
		return Execute(root, args, strings.NewReader(""), &o, &e), e.String()
	}
	t.Setenv("PROG_TIMEOUT", "5m")
	if code, e := execute("status"); code != ExitOK || !ran {
		t.Fatalf("status with PROG_TIMEOUT set: exit %d: %s", code, e)
	}
	if code, e := execute("status", "--wait"); code != ExitOK || timeout != 5*time.Minute {
		t.Errorf("status --wait: exit %d, timeout %v (want the environment's 5m): %s", code, timeout, e)
	}
	if code, e := execute("status", "--timeout", "1m"); code != ExitUsage || !strings.Contains(e, "--timeout goes with --wait") {
		t.Errorf("status --timeout typed without --wait: exit %d: %s", code, e)
	}
}

// TestWaitAnyRefusesGeneration: --until any ignores generations, so a
// --generation with it is a usage error rather than silently ignored.
func TestWaitAnyRefusesGeneration(t *testing.T) {
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	fs.Int64("generation", 0, "")
	if err := fs.Parse([]string{"--generation", "3"}); err != nil {
		t.Fatal(err)
	}
	var e *Error
	if err := CheckWait(fs, true, UntilAny, 3, 0); !errors.As(err, &e) || e.Code != ExitUsage {
		t.Errorf("--until any --generation 3: %v, want a usage error", err)
	}
	if err := CheckWait(fs, true, UntilProvisioned, 3, 0); err != nil {
		t.Errorf("--until provisioned --generation 3: %v", err)
	}
}

// notExist is the OS's own words for a missing file (ENOENT's "no such file
// or directory", Windows' "The system cannot find the file specified."),
// which the message must pass on.
func notExist(t *testing.T, path string) string {
	t.Helper()
	_, err := os.ReadFile(path)
	var pe *fs.PathError
	if !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read %s: %v; want a missing file", path, err)
	}
	return pe.Err.Error()
}
