package cli

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// ConfigFlag is the name of the config file flag AddConfigFlag adds.
const ConfigFlag = "config"

// AddConfigFlag adds --config FILE to cmd (serve, run): a file of settings
// whose names are cmd's flag names, below the command line and the
// environment in precedence (docs/cli.md).
func AddConfigFlag(cmd *cobra.Command) {
	cmd.Flags().String(ConfigFlag, "", "read settings from this file (lines of 'flag-name = value'; the command line and the environment win over it)")
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annConfig] = "true"
}

// AnnotationNoEnv, set on a command, keeps the environment and the config
// file from setting its flags (prewarm-agent install records only what its
// command line says).
const AnnotationNoEnv = "prewarm.cli/no-env"

// NoEnv keeps the environment and the config file from setting cmd's flag
// name, which then comes from the command line only: prewarm-pool claim's
// --config is a claim's document, and PREWARM_POOL_CONFIG is serve's
// config file.
func NoEnv(cmd *cobra.Command, name string) {
	cmd.Flags().SetAnnotation(name, AnnotationNoEnv, []string{"true"})
}

// annFrom marks a flag that the environment or the config file set (its
// value: "env" or "file"): pflag counts it as Changed, but the user did
// not type it (Typed).
const annFrom = "prewarm.cli/from"

// Typed reports whether flag name was given on the command line, as
// opposed to its default or a value from the environment or the config
// file: rules about what a user combined on a command line (this flag
// goes with --wait) must look at what was typed, or PREWARM_IMDS_TIMEOUT
// in the environment would make every plain `status` a usage error.
func Typed(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed && len(f.Annotations[annFrom]) == 0
}

// noEnv reports whether f is marked by NoEnv.
func noEnv(f *pflag.Flag) bool { return len(f.Annotations[AnnotationNoEnv]) > 0 }

// EnvName is the environment variable of flag name under prefix:
// PREWARM_IMDS_ and admin-socket give PREWARM_IMDS_ADMIN_SOCKET.
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// skipEnv are flags no environment variable or file sets.
var skipEnv = map[string]bool{"help": true, "version": true, "json": true}

// applyEnvAndFile sets cmd's flags that the command line left alone: from
// the environment first, then from the config file, so that a flag wins
// over the environment and the environment over the file.
func applyEnvAndFile(cmd *cobra.Command) error {
	if cmd.Annotations[AnnotationNoEnv] != "" {
		return nil
	}
	prefix := cmd.Root().Annotations[annEnvPrefix]
	fs := cmd.Flags()
	set := map[string]string{} // flag name -> where it was set
	fs.Visit(func(f *pflag.Flag) { set[f.Name] = "the command line" })
	if prefix != "" {
		var err error
		fs.VisitAll(func(f *pflag.Flag) {
			if err != nil || skipEnv[f.Name] || noEnv(f) || set[f.Name] != "" {
				return
			}
			name := EnvName(prefix, f.Name)
			v, ok := os.LookupEnv(name)
			if !ok {
				return
			}
			if e := fs.Set(f.Name, v); e != nil {
				err = Usagef("environment variable %s=%q: %v", name, v, e).WithHint("fix or unset %s (it sets --%s)", name, f.Name)
				return
			}
			fs.SetAnnotation(f.Name, annFrom, []string{"env"})
			set[f.Name] = "the environment"
		})
		if err != nil {
			return err
		}
	}
	if cmd.Annotations[annConfig] == "" {
		return nil
	}
	path, _ := fs.GetString(ConfigFlag)
	if path == "" {
		return nil
	}
	return applyFile(cmd, path, set)
}

// applyFile reads the config file at path and sets the flags it names that
// are not in set.
func applyFile(cmd *cobra.Command, path string, set map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return Errorf(ExitUsage, "cannot read config file %s: %v", path, unwrapAll(err)).WithHint("check the path given to --%s", ConfigFlag)
	}
	defer f.Close()
	fs := cmd.Flags()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		bad := func(format string, args ...any) *Error {
			return Usagef("config file %s line %d: %s", path, n, fmt.Sprintf(format, args...))
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return bad("want 'flag-name = value', got %q", line)
		}
		k = strings.TrimPrefix(strings.TrimSpace(k), "--")
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, `"`) {
			u, err := strconv.Unquote(v)
			if err != nil {
				return bad("value %s: a quoted value must be one Go/C-style string", v)
			}
			v = u
		}
		fl := fs.Lookup(k)
		if fl == nil || skipEnv[k] || noEnv(fl) || k == ConfigFlag {
			return bad("unknown setting %q: '%s' has no --%s flag", k, cmd.CommandPath(), k).WithHint("run '%s --help' for its flags", cmd.CommandPath())
		}
		if prev, ok := seen[k]; ok && !repeatable(fl) {
			return bad("%s is set twice (first on line %d) and takes one value", k, prev)
		}
		seen[k] = n
		if set[k] != "" && set[k] != "file" {
			continue // the command line or the environment set it
		}
		if err := fs.Set(k, v); err != nil {
			return bad("%s = %q: %v", k, v, err)
		}
		fs.SetAnnotation(k, annFrom, []string{"file"})
		set[k] = "file"
	}
	if err := sc.Err(); err != nil {
		return Errorf(ExitUsage, "cannot read config file %s: %v", path, unwrapAll(err))
	}
	return nil
}

// repeatable reports whether a flag takes several values (a slice).
func repeatable(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array")
}

// unwrapAll returns the innermost error of err's chain: "no such file or
// directory" rather than "open x: no such file or directory" when the
// message already names x.
func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

// Cause is the innermost error of err's chain, for messages that name
// the object themselves.
func Cause(err error) error { return unwrapAll(err) }
