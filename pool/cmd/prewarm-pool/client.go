package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	poolcfg "github.com/prewarm/prewarm/pool/config"
	"github.com/prewarm/prewarm/pool/controller"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
)

// apiClient talks to the controller's admin socket.
type apiClient struct {
	socket string
	hc     *http.Client
}

func newClient(socket string) *apiClient {
	return &apiClient{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// apiError is the controller's error answer: its status and error object.
type apiError struct {
	status int
	body   api.Error
}

func (e *apiError) Error() string {
	if e.body.Error == "" {
		return fmt.Sprintf("HTTP %d", e.status)
	}
	return e.body.Error
}

// do sends a request and decodes a 2xx answer into out; an error answer
// is an *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://prewarm-pool"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", api.ContentTypeJSON)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &apiError{status: resp.StatusCode}
		if json.Unmarshal(data, &e.body) != nil || e.body.Error == "" {
			e.body = api.Error{Error: strings.TrimSpace(fmt.Sprintf("%s: %s", resp.Status, data))}
		}
		return e
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// guestFailed matches the controller's message for a claim whose agent
// reported failed; the guest's own error follows it.
var guestFailed = regexp.MustCompile(`agent failed to apply generation (\d+): `)

// explain turns a request's error into a *cli.Error: the exit code, what
// failed in one line without the Go error chain, and what to do.
func (c *apiClient) explain(err error, what string) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		e := &cli.Error{Code: cli.ExitFailure, Msg: what + ": " + ae.Error()}
		for _, f := range ae.body.Fields {
			if f.Path != "" {
				e.Detail += f.Path + ": "
			}
			e.Detail += f.Reason + "\n"
		}
		msg := ae.body.Error
		switch ae.status {
		case http.StatusNotFound:
			e.Code = cli.ExitNotFound
			e.Hint = "'prewarm-pool status' lists the flavors and VMs"
		case http.StatusGatewayTimeout:
			e.Code = cli.ExitTimeout
			e.Hint = "the claim goes on in the controller: run the same claim again with the same --claim-id (and a longer --timeout) to await it"
		case http.StatusBadGateway:
			if loc := guestFailed.FindStringSubmatchIndex(msg); loc != nil {
				// "claim C on VM V: provisioned: agent failed to apply generation N: GUEST ERROR"
				e.Code = cli.ExitGuestFailed
				e.Msg = fmt.Sprintf("%s: the guest reported failed for generation %s (%s)", what, msg[loc[2]:loc[3]], strings.TrimSuffix(strings.TrimSpace(msg[:loc[0]]), ":"))
				e.Detail = "error: " + strings.TrimSuffix(msg[loc[1]:], " (release it and claim with a new id)") + "\n" + e.Detail
				e.Hint = "fix the document; release the VM ('prewarm-pool release VM') and claim again with a new --claim-id"
			}
		case http.StatusConflict:
			e.Hint = "'prewarm-pool status' shows the VMs, their claims and addresses"
		case http.StatusServiceUnavailable:
			if strings.Contains(msg, "no free address") {
				e.Hint = "release a VM of that network, or widen the network's range in the pool's config"
			} else {
				e.Code = cli.ExitUnreachable
				e.Hint = "the controller is starting or stopping: retry in a moment"
			}
		case http.StatusBadRequest:
			e.Hint = "fix the fields named above"
		}
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return cli.Errorf(cli.ExitTimeout, "%s: no answer from the pool controller at %s in time", what, c.socket).
			WithHint("raise --timeout, or check the controller's load")
	}
	if errors.Is(err, context.Canceled) {
		return cli.Errorf(cli.ExitFailure, "%s: interrupted", what)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		e := cli.Errorf(cli.ExitUnreachable, "%s: cannot reach the pool controller at unix:%s: %v", what, c.socket, cli.Cause(err))
		if errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission) {
			e.Hint = "the socket is mode 0660: run as root or as a member of its group"
		} else {
			e.Hint = "is prewarm-pool serve running? Point at its admin socket with --socket (PREWARM_POOL_SOCKET)"
		}
		return e
	}
	return cli.Errorf(cli.ExitFailure, "%s: %v", what, err)
}

func addSocketFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("socket", poolcfg.DefaultSocket, "the controller's admin socket")
}

// completeFrom completes a command's one argument with names from the
// running controller's status (the flavors, or the VMs), asked for on
// --socket or PREWARM_POOL_SOCKET (completion runs before the environment
// is applied); nothing when it does not answer within a second.
func completeFrom(sock *string, names func(controller.Status) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		socket := *sock
		if v, ok := os.LookupEnv(cli.EnvName(envPrefix, "socket")); ok && !cmd.Flags().Changed("socket") {
			socket = v
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Second)
		defer cancel()
		var st controller.Status
		if err := newClient(socket).do(ctx, http.MethodGet, controller.PathStatus, nil, &st); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(st), cobra.ShellCompDirectiveNoFileComp
	}
}

// commandContext is interrupted by SIGINT and SIGTERM and ends after d.
func commandContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }
}

func claimCmd() *cobra.Command {
	var docPath, network, claimID, ip string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "claim FLAVOR --config DOC.json",
		Short: "Take a warm VM of FLAVOR (or boot one cold) with the final config document",
		Long: `claim hands a VM of FLAVOR to a tenant: a warm one when there is one (its
tenant network attached, the final document DOC.json published to the IMDS,
awaited until the guest reports provisioned), else one booted cold. It
prints the VM, its address and the claim's timings (docs/pool.md).

A claim that runs out of --timeout goes on in the controller: the same
command with the same --claim-id awaits it, and a retry of a finished
claim returns the same VM. --config is the claim's document and comes from
the command line only (- reads it from stdin).`,
		Example: `  prewarm-pool claim small --config web-1.json
  prewarm-pool claim small --config web-1.json --network tenant-a --ip 10.10.1.50 --claim-id order-17 --timeout 5m
  prewarm-pool claim small --config - -o json < web-1.json`,
		Args: cli.ExactArgs(1, "FLAVOR"),
	}
	sock := addSocketFlag(cmd)
	out := cli.AddOutputFlag(cmd)
	cmd.ValidArgsFunction = completeFrom(sock, func(st controller.Status) []string {
		var names []string
		for _, f := range st.Flavors {
			names = append(names, f.Name)
		}
		return names
	})
	f := cmd.Flags()
	f.StringVar(&docPath, "config", "", "the final config document (JSON file, - for stdin); required")
	f.StringVar(&network, "network", "", "tenant network (default: the flavor's tenantNetwork)")
	f.StringVar(&claimID, "claim-id", "", "claim id: a retry with the same id returns the same VM")
	f.StringVar(&ip, "ip", "", "tenant address to reserve (default: the first free one)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up waiting after this long (exit 4; the claim goes on)")
	cli.NoEnv(cmd, "config")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if docPath == "" {
			return cli.Usagef("claim wants --config DOC.json (the final config document)").WithHint("pass the document's file, or - to read it from stdin")
		}
		if timeout <= 0 {
			return cli.Usagef("--timeout %s: want a positive duration", timeout).WithHint("run 'prewarm-pool claim --help' for usage")
		}
		var doc []byte
		var err error
		if docPath == "-" {
			doc, err = io.ReadAll(cmd.InOrStdin())
		} else {
			doc, err = os.ReadFile(docPath)
		}
		if err != nil {
			return cli.Errorf(cli.ExitFailure, "cannot read the config document %s: %v", docPath, cli.Cause(err))
		}
		if !json.Valid(doc) {
			return cli.Errorf(cli.ExitFailure, "the config document %s is not valid JSON", docPath).WithHint("check it with 'jq . %s'", docPath)
		}
		req := controller.ClaimRequest{Flavor: args[0], Network: network, ClaimID: claimID, IP: ip,
			TimeoutMS: timeout.Milliseconds(), Document: doc}
		ctx, cancel := commandContext(timeout + 2*time.Second)
		defer cancel()
		c := newClient(*sock)
		var res controller.ClaimResult
		if err := c.do(ctx, http.MethodPost, controller.PathClaims, req, &res); err != nil {
			return c.explain(err, "claim "+args[0])
		}
		if out.JSON() {
			return cli.WriteJSON(cmd.OutOrStdout(), res)
		}
		return printClaim(cmd.OutOrStdout(), res)
	}
	return cmd
}

// printClaim prints the claim's result as lines of "field  value" (the
// form docs/pool.md shows).
func printClaim(w io.Writer, res controller.ClaimResult) error {
	t := res.Timings
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "vm\t%s\n", res.VM)
	fmt.Fprintf(tw, "mac\t%s\n", res.MAC)
	fmt.Fprintf(tw, "network\t%s\n", res.Network)
	fmt.Fprintf(tw, "ip\t%s\n", res.IP)
	fmt.Fprintf(tw, "path\t%s\n", res.Path)
	fmt.Fprintf(tw, "claim id\t%s\n", res.ClaimID)
	fmt.Fprintf(tw, "generation\t%d\n", res.Generation)
	if res.Replayed {
		fmt.Fprintf(tw, "replayed\tyes (the claim id had completed before; timings are not repeated)\n")
	} else {
		fmt.Fprintf(tw, "timing (ms since the claim)\tpicked %d, reserved %d, published %d, remapped %d, bounced %d, renewed %d, provisioned %d, total %d\n",
			t.PickedMS, t.ReservedMS, t.PublishedMS, t.RemappedMS, t.BouncedMS, t.RenewedMS, t.ProvisionedMS, t.TotalMS)
		fmt.Fprintf(tw, "applied (agent's steps)\t%d ms\n", t.AppliedMS)
	}
	return tw.Flush()
}

func statusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each flavor's pool (warm, booting, claimed, failed, last boot) and every VM",
		Example: `  prewarm-pool status
  prewarm-pool status -o json | jq '.flavors[] | {name, warm}'`,
		Args: cli.NoArgs,
	}
	sock := addSocketFlag(cmd)
	out := cli.AddOutputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := commandContext(10 * time.Second)
		defer cancel()
		c := newClient(*sock)
		var st controller.Status
		if err := c.do(ctx, http.MethodGet, controller.PathStatus, nil, &st); err != nil {
			return c.explain(err, "status")
		}
		if out.JSON() {
			return cli.WriteJSON(cmd.OutOrStdout(), st)
		}
		return printStatus(cmd.OutOrStdout(), st)
	}
	return cmd
}

func printStatus(w io.Writer, st controller.Status) error {
	var rows [][]string
	for _, f := range st.Flavors {
		last := ""
		if f.LastBootAt != "" {
			last = fmt.Sprintf("%.1fs at %s", float64(f.LastBootMS)/1000, f.LastBootAt)
		}
		rows = append(rows, []string{f.Name, strconv.Itoa(f.Target), strconv.Itoa(f.Warm), strconv.Itoa(f.Booting),
			strconv.Itoa(f.Claiming), strconv.Itoa(f.Claimed), strconv.Itoa(f.Failed), last})
	}
	if err := cli.Table(w, []string{"FLAVOR", "TARGET", "WARM", "BOOTING", "CLAIMING", "CLAIMED", "FAILED", "LAST BOOT"}, rows); err != nil {
		return err
	}
	if len(st.VMs) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	sort.Slice(st.VMs, func(i, j int) bool { return st.VMs[i].Name < st.VMs[j].Name })
	rows = rows[:0]
	for _, v := range st.VMs {
		rows = append(rows, []string{v.Name, v.Flavor, string(v.State), v.Path, v.MAC, v.Network, v.IP, v.ClaimID})
	}
	return cli.Table(w, []string{"VM", "FLAVOR", "STATE", "PATH", "MAC", "NETWORK", "IP", "CLAIM"}, rows)
}

func releaseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "release VM",
		Short:   "Destroy a VM, remove its overlay and reservations; the pool refills",
		Example: `  prewarm-pool release pw-small-0a1b2c`,
		Args:    cli.ExactArgs(1, "VM"),
	}
	sock := addSocketFlag(cmd)
	cmd.ValidArgsFunction = completeFrom(sock, func(st controller.Status) []string {
		var names []string
		for _, v := range st.VMs {
			names = append(names, v.Name)
		}
		return names
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx, cancel := commandContext(60 * time.Second)
		defer cancel()
		c := newClient(*sock)
		if err := c.do(ctx, http.MethodDelete, controller.PathVMs+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return c.explain(err, "release "+args[0])
		}
		fmt.Fprintf(cmd.OutOrStdout(), "released %s\n", args[0])
		return nil
	}
	return cmd
}
