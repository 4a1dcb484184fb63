package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
)

// cli runs one admin command against the admin API.
func cli(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("admin-socket", api.DefaultAdminSocket, "admin API Unix socket")
	adminURL := fs.String("admin-url", "", "admin API over TCP, e.g. http://127.0.0.1:8081 (instead of the socket)")
	tokenFile := fs.String("admin-token-file", "", "bearer token file for --admin-url")
	timeout := fs.Duration("timeout", 0, "for status --wait: how long to wait (default 60s, at most 5m); otherwise the request timeout (default 30s)")
	var addrs, labels multiFlag
	var iface *string
	var ifMatch *string
	var wait *bool
	var after *uint64
	var asJSON *bool
	switch cmd {
	case "register":
		fs.Var(&addrs, "address", "guest address (repeatable, or comma separated)")
		iface = fs.String("host-interface", "", "host-side network device of the guest")
		fs.Var(&labels, "label", "label KEY=VALUE (repeatable)")
	case "publish":
		ifMatch = fs.String("if-match", "", `publish only if the current generation is this ("0": nothing published yet)`)
	case "status":
		wait = fs.Bool("wait", false, "wait for a report newer than --after")
		after = fs.Uint64("after", 0, "only reports with seq above this")
	case "list":
		asJSON = fs.Bool("json", false, "print JSON instead of a table")
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	want := 1
	if cmd == "publish" {
		want = 2
	} else if cmd == "list" {
		want = 0
	}
	if len(pos) != want {
		return fmt.Errorf("%w: want %d argument(s), got %d (see -h)", errUsage, want, len(pos))
	}
	var c *client.Client
	if *adminURL != "" {
		var opts []client.Option
		if *tokenFile != "" {
			b, err := os.ReadFile(*tokenFile)
			if err != nil {
				return fmt.Errorf("read admin token: %w", err)
			}
			opts = append(opts, client.WithToken(strings.TrimSpace(string(b))))
		}
		c = client.NewHTTP(*adminURL, opts...)
	} else {
		c = client.NewUnix(*socket)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	reqTimeout := 30 * time.Second
	if cmd == "status" && *wait {
		w := *timeout
		if w <= 0 {
			w = api.DefaultWaitSeconds * time.Second
		}
		reqTimeout = w + 10*time.Second
	} else if *timeout > 0 {
		reqTimeout = *timeout
	}
	ctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()

	switch cmd {
	case "register":
		reg := api.Registration{Addresses: addrs, HostInterface: *iface}
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				return fmt.Errorf("%w: --label %q: want KEY=VALUE", errUsage, l)
			}
			if reg.Labels == nil {
				reg.Labels = map[string]string{}
			}
			reg.Labels[k] = v
		}
		inst, err := c.Register(ctx, pos[0], reg)
		if err != nil {
			return err
		}
		return printJSON(stdout, inst)
	case "publish":
		var data []byte
		if pos[1] == "-" {
			data, err = io.ReadAll(io.LimitReader(stdin, config.MaxDocumentBytes+1))
		} else {
			data, err = os.ReadFile(pos[1])
		}
		if err != nil {
			return fmt.Errorf("read config document: %w", err)
		}
		var gen int64
		if *ifMatch != "" {
			m, err := strconv.ParseInt(strings.Trim(*ifMatch, `"`), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: --if-match %q: want a generation", errUsage, *ifMatch)
			}
			gen, err = c.PublishIfMatch(ctx, pos[0], data, m)
			if err != nil {
				return err
			}
		} else if gen, err = c.Publish(ctx, pos[0], data); err != nil {
			return err
		}
		fmt.Fprintln(stdout, gen)
		return nil
	case "status":
		h, err := c.Status(ctx, pos[0], *after, *wait, *timeout)
		if errors.Is(err, client.ErrNotModified) {
			return fmt.Errorf("no status report with seq above %d arrived in time", *after)
		}
		if err != nil {
			return err
		}
		return printJSON(stdout, h)
	case "list":
		l, err := c.List(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, api.InstanceList{Instances: l})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tGENERATION\tADDRESSES\tHOST-INTERFACE\tSTATE")
		for _, in := range l {
			st := "-"
			if in.LastStatus != nil {
				st = in.LastStatus.State
			}
			hi := in.HostInterface
			if hi == "" {
				hi = "-"
			}
			ad := strings.Join(in.Addresses, ",")
			if ad == "" {
				ad = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", in.ID, in.Generation, ad, hi, st)
		}
		return tw.Flush()
	case "get":
		inst, err := c.Instance(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, inst)
	case "config":
		d, err := c.GetConfig(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, d)
	case "delete":
		return c.Delete(ctx, pos[0])
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
