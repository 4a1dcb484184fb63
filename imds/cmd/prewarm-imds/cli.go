package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
	"github.com/prewarm/prewarm/shared/config"
)

// adminFlags say where the admin API is.
type adminFlags struct {
	socket, url, tokenFile string
	requestTimeout         time.Duration
}

func addAdminFlags(cmd *cobra.Command) *adminFlags {
	a := &adminFlags{}
	f := cmd.Flags()
	f.StringVar(&a.socket, "admin-socket", api.DefaultAdminSocket, "admin API Unix socket")
	f.StringVar(&a.url, "admin-url", "", "admin API over TCP, e.g. http://127.0.0.1:8081 (instead of the socket)")
	f.StringVar(&a.tokenFile, "admin-token-file", "", "bearer token file for --admin-url")
	f.DurationVar(&a.requestTimeout, "request-timeout", 30*time.Second, "how long one admin API request may take")
	return a
}

// where names the admin API for messages.
func (a *adminFlags) where() string {
	if a.url != "" {
		return a.url
	}
	return "unix:" + a.socket
}

func (a *adminFlags) client() (*client.Client, error) {
	if a.url == "" {
		return client.New("http://imds-admin", adminConn{network: "unix", addr: a.socket}), nil
	}
	var opts []client.Option
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return nil, cli.Errorf(cli.ExitFailure, "cannot read the admin token file %s: %v", a.tokenFile, cli.Cause(err)).
				WithHint("check --admin-token-file (PREWARM_IMDS_ADMIN_TOKEN_FILE)")
		}
		opts = append(opts, client.WithToken(strings.TrimSpace(string(b))))
	}
	return client.New(a.url, adminConn{network: "tcp"}, opts...), nil
}

// explain turns an admin API error into a *cli.Error with the exit code,
// a message without the Go error chain, and what to do.
func (a *adminFlags) explain(err error, what string) error {
	if err == nil {
		return nil
	}
	var ce *cli.Error
	if errors.As(err, &ce) {
		return err
	}
	var ae *client.Error
	if errors.As(err, &ae) {
		msg := ae.Body.Error
		if msg == "" {
			msg = fmt.Sprintf("HTTP %d", ae.StatusCode)
		}
		e := &cli.Error{Code: cli.ExitFailure, Msg: what + ": " + msg}
		for _, f := range ae.Body.Fields {
			if f.Path != "" {
				e.Detail += f.Path + ": "
			}
			e.Detail += f.Reason + "\n"
		}
		switch ae.StatusCode {
		case 404:
			e.Code = cli.ExitNotFound
			e.Hint = "'prewarm-imds list' shows the registered instances"
		case 401:
			e.Hint = "the admin API wants the bearer token of serve's --admin-token-file: pass the same file with --admin-token-file"
		case 412:
			e.Hint = "another publish came first: read the current generation with 'prewarm-imds get ID' and retry"
		case 409:
			e.Hint = "an address or host interface belongs to one instance only: 'prewarm-imds list' shows which"
		case 503:
			e.Code = cli.ExitUnreachable
			e.Hint = "the service is shutting down or its store is unreachable: retry; 'curl --unix-socket SOCKET http://x/healthz' says which"
		}
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return cli.Errorf(cli.ExitTimeout, "%s: no answer from the IMDS admin API at %s in time", what, a.where()).
			WithHint("raise --request-timeout, or check the service's load")
	}
	if errors.Is(err, context.Canceled) {
		return cli.Errorf(cli.ExitFailure, "%s: interrupted", what)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		e := cli.Errorf(cli.ExitUnreachable, "%s: cannot reach the IMDS admin API at %s: %v", what, a.where(), cli.Cause(err))
		switch {
		case errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission):
			e.Hint = "the socket is mode 0660: run as root or as a member of its group"
		default:
			e.Hint = "is prewarm-imds serve running (systemctl status prewarm-imds)? Point at it with --admin-socket or --admin-url (PREWARM_IMDS_ADMIN_SOCKET, PREWARM_IMDS_ADMIN_URL)"
		}
		return e
	}
	return cli.Errorf(cli.ExitFailure, "%s: %v", what, err)
}

// commandContext is interrupted by SIGINT and SIGTERM.
func commandContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func adminCmds() []*cobra.Command {
	return []*cobra.Command{registerCmd(), publishCmd(), statusCmd(), listCmd(), getCmd(), configCmd(), knownHostsCmd(), deleteCmd()}
}

func registerCmd() *cobra.Command {
	var addrs, labels []string
	var iface string
	cmd := &cobra.Command{
		Use:   "register ID",
		Short: "Register or update an instance: its addresses and/or host interface",
		Long: `register tells the IMDS how to recognise instance ID's requests: by the
host-side network device they arrive on (--host-interface) and/or by their
source addresses (--address). It prints the instance.`,
		Example: `  prewarm-imds register vm-1 --host-interface vnet7
  prewarm-imds register vm-2 --address 10.0.0.4 --label pool=web`,
		Args: cli.ExactArgs(1, "ID"),
	}
	a := addAdminFlags(cmd)
	out := cli.AddOutputFlag(cmd)
	cmd.Flags().StringSliceVar(&addrs, "address", nil, "guest address (repeatable, or comma separated)")
	cmd.Flags().StringVar(&iface, "host-interface", "", "host-side network device of the guest")
	cmd.Flags().StringSliceVar(&labels, "label", nil, "label KEY=VALUE (repeatable)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		reg := api.Registration{Addresses: addrs, HostInterface: iface}
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				return cli.Usagef("--label %q: want KEY=VALUE", l)
			}
			if reg.Labels == nil {
				reg.Labels = map[string]string{}
			}
			reg.Labels[k] = v
		}
		return a.call(func(ctx context.Context, c *client.Client) error {
			inst, err := c.Register(ctx, args[0], reg)
			if err != nil {
				return a.explain(err, fmt.Sprintf("register %s", args[0]))
			}
			return printInstance(cmd.OutOrStdout(), out, inst)
		})
	}
	return cmd
}

// call runs fn with a client of the admin API and a request context
// bounded by --request-timeout.
func (a *adminFlags) call(fn func(ctx context.Context, c *client.Client) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	return fn(ctx, c)
}

// ctx is a request context bounded by --request-timeout.
func (a *adminFlags) ctx() (context.Context, context.CancelFunc) {
	ctx, stop := commandContext()
	ctx, cancel := context.WithTimeout(ctx, a.requestTimeout)
	return ctx, func() { cancel(); stop() }
}

func publishCmd() *cobra.Command {
	var ifMatch string
	cmd := &cobra.Command{
		Use:   "publish ID FILE|-",
		Short: "Publish a config document (FILE, or - for stdin); prints its generation",
		Example: `  prewarm-imds publish vm-1 web-1.json
  echo '{"partial": true, "hostname": "pool-0001"}' | prewarm-imds publish vm-1 -
  prewarm-imds publish vm-1 web-1.json --if-match 3`,
		Args: cli.ExactArgs(2, "ID FILE|-"),
	}
	a := addAdminFlags(cmd)
	cmd.Flags().StringVar(&ifMatch, "if-match", "", `publish only if the current generation is this ("0": nothing published yet)`)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var data []byte
		var err error
		if args[1] == "-" {
			data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), config.MaxDocumentBytes+1))
		} else {
			data, err = os.ReadFile(args[1])
		}
		if err != nil {
			return cli.Errorf(cli.ExitFailure, "cannot read the config document %s: %v", args[1], cli.Cause(err))
		}
		return a.call(func(ctx context.Context, c *client.Client) error {
			var gen int64
			what := "publish to " + args[0]
			if ifMatch != "" {
				m, perr := strconv.ParseInt(strings.Trim(ifMatch, `"`), 10, 64)
				if perr != nil {
					return cli.Usagef("--if-match %q: want a generation number", ifMatch)
				}
				gen, err = c.PublishIfMatch(ctx, args[0], data, m)
			} else {
				gen, err = c.Publish(ctx, args[0], data)
			}
			if err != nil {
				return a.explain(err, what)
			}
			fmt.Fprintln(cmd.OutOrStdout(), gen)
			return nil
		})
	}
	return cmd
}

func getCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get ID",
		Short:   "Show one instance: registration, published generation, last report",
		Example: "  prewarm-imds get vm-1\n  prewarm-imds get vm-1 -o json",
		Args:    cli.ExactArgs(1, "ID"),
	}
	a := addAdminFlags(cmd)
	out := cli.AddOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return a.call(func(ctx context.Context, c *client.Client) error {
			inst, err := c.Instance(ctx, args[0])
			if err != nil {
				return a.explain(err, "get "+args[0])
			}
			return printInstance(cmd.OutOrStdout(), out, inst)
		})
	}
	return cmd
}

// fieldList is the table form of one object (get, config): one field a
// line, "name:" padded to width, "-" for a field without a value.
type fieldList struct {
	strings.Builder
	width int
}

func (f *fieldList) add(name, value string) {
	if value == "" {
		value = "-"
	}
	// A value may be the guest's text (get's last event and error).
	fmt.Fprintf(f, "%-*s %s\n", f.width, name+":", cli.Printable(value))
}

// printInstance prints one instance: its JSON (the admin API's object), or
// one field a line.
func printInstance(w io.Writer, out *cli.Output, inst api.Instance) error {
	if out.JSON() {
		return cli.WriteJSON(w, inst)
	}
	row := listRow(inst, time.Now())
	b := fieldList{width: 20}
	b.add("instance", inst.ID)
	b.add("addresses", strings.Join(inst.Addresses, ", "))
	b.add("host interface", inst.HostInterface)
	var ls []string
	for k, v := range inst.Labels {
		ls = append(ls, k+"="+v)
	}
	b.add("labels", strings.Join(sortStrings(ls), ", "))
	b.add("published", row.Published)
	b.add("reported generation", row.Reported)
	b.add("state", row.State)
	b.add("last report", row.LastReport)
	if inst.LastStatus != nil && inst.LastStatus.Event != "" {
		b.add("last event", inst.LastStatus.Event)
	}
	b.add("last error", row.LastError)
	_, err := io.WriteString(w, b.String())
	return err
}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config ID",
		Short: "Show the current config document (plaintext passwords redacted)",
		Long: `config prints instance ID's current config document as the IMDS serves it,
plaintext passwords as "REDACTED": as JSON (the default), or with
--output table a summary of its fields.`,
		Example: "  prewarm-imds config vm-1\n  prewarm-imds config vm-1 -o table",
		Args:    cli.ExactArgs(1, "ID"),
	}
	a := addAdminFlags(cmd)
	out := cli.AddOutputFlagDefault(cmd, cli.OutputJSON)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var d *config.Document
		err := a.call(func(ctx context.Context, c *client.Client) (err error) {
			d, err = c.GetConfig(ctx, args[0])
			return a.explain(err, "config of "+args[0])
		})
		if err != nil {
			return err
		}
		if out.JSON() {
			return cli.WriteJSON(cmd.OutOrStdout(), d)
		}
		var users []string
		for _, u := range d.Users {
			users = append(users, u.Name)
		}
		b := fieldList{width: 12}
		b.add("instance", d.InstanceID)
		b.add("generation", strconv.FormatInt(d.Generation, 10))
		b.add("partial", strconv.FormatBool(d.Partial))
		b.add("hostname", d.Hostname)
		b.add("timezone", d.Timezone)
		b.add("users", strings.Join(users, ", "))
		b.add("network", map[bool]string{true: "set", false: ""}[d.Network != nil])
		b.add("user data", map[bool]string{true: "set", false: ""}[d.UserData != nil])
		_, err = io.WriteString(cmd.OutOrStdout(), b.String())
		return err
	}
	return cmd
}

func deleteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete ID",
		Short:   "Forget an instance, its config and its status history",
		Example: "  prewarm-imds delete vm-1",
		Args:    cli.ExactArgs(1, "ID"),
	}
	a := addAdminFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return a.call(func(ctx context.Context, c *client.Client) error {
			return a.explain(c.Delete(ctx, args[0]), "delete "+args[0])
		})
	}
	return cmd
}
