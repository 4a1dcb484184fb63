package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/prewarm/prewarm/imds/dialect"
	"github.com/prewarm/prewarm/imds/guestnet"
	"github.com/prewarm/prewarm/imds/server"
	"github.com/prewarm/prewarm/internal/gctune"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
)

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the metadata service",
		Long: `serve runs the metadata service until SIGTERM or SIGINT: the guest API on
--listen (and bound to each guest's host interface), the admin API on
--admin-socket and, with a token, --admin-listen.

Settings come from the flags, then PREWARM_IMDS_<FLAG> environment
variables, then the --config file (lines of 'flag-name = value', '#'
comments; a repeatable flag may appear on several lines), then the
defaults: docs/cli.md.`,
		Example: `  prewarm-imds serve
  prewarm-imds serve --config /etc/prewarm/imds.conf
  PREWARM_IMDS_LOG_LEVEL=debug prewarm-imds serve --listen 127.0.0.1:8169 --admin-socket /tmp/imds.sock`,
		Args: cli.NoArgs,
	}
	run := serveFlags(cmd.Flags())
	cli.AddConfigFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return run(cmd.ErrOrStderr()) }
	return cmd
}

// gcPolicy is the collector's rule for the service when the environment
// sets no GOGC (internal/gctune): after each collection the heap may grow
// by 75 % of what is live, but by no less than 8 MiB.
//
//   - 75 %, not the runtime's 100 %: the IMDS shares its host with the VMs
//     it serves, so memory is what it should spare. Under the write path
//     (10,000 instances, 1,000 guests reporting, full histories) RSS is
//     ~89 MB instead of ~100, ingest and publish latency within their
//     spread. Prometheus's server made the same choice (GOGC=75).
//   - 8 MiB at least: with a small live heap the runtime's floor (4 MiB ×
//     GOGC/100) makes a GET-heavy load collect every few dozen
//     milliseconds; GOGC=75 alone cost ~6 % of GET throughput against
//     the bare handler (BENCHMARKS.md, issue 15).
//
// Both scale with the fleet, unlike a fixed GOMEMLIMIT; an operator's
// GOGC rules instead, and GOMEMLIMIT applies on top.
var gcPolicy = gctune.Policy{Percent: 75, MinHeadroom: 8 << 20}

// tuneGC starts gcPolicy's tuner unless GOGC is set. An empty GOGC counts
// as unset, as the runtime reads it (GOGC=100, not an operator's value).
func tuneGC(lookupEnv func(string) (string, bool)) (stop func()) {
	if v, _ := lookupEnv("GOGC"); v != "" {
		return func() {}
	}
	return gctune.Start(gcPolicy)
}

// serveFlags defines serve's flags on fs and returns the function that
// runs the service with them until SIGTERM or SIGINT.
func serveFlags(fs *pflag.FlagSet) func(stderr io.Writer) error {
	listen := fs.String("listen", api.DefaultGuestAddr, `guest API address ("" for none)`)
	ifaces := fs.StringSlice("guest-interface", nil, "host device (repeatable, or comma separated) to bind a guest listener to (SO_BINDTODEVICE, on --listen's address) even before an instance registers it as its hostInterface")
	bindIfaces := fs.Bool("bind-interfaces", true, "bind a guest listener to every registered hostInterface on --listen's address (Linux), following the devices as they come and go")
	adminSocket := fs.String("admin-socket", api.DefaultAdminSocket, `admin API Unix socket ("" for none)`)
	adminListen := fs.String("admin-listen", "", "also serve the admin API on this TCP address (requires --admin-token-file)")
	tokenFile := fs.String("admin-token-file", "", "file holding the bearer token of --admin-listen: at least 32 printable bytes, mode 0600 or stricter (serve refuses to start otherwise)")
	dataDir := fs.String("data-dir", "/var/lib/prewarm-imds", "directory of the embedded store")
	publishDir := fs.String("publish-dir", "", "watch this directory for <id>.json publish files")
	rate := fs.Float64("rate", server.DefaultRate, "per-instance guest requests per second (0 turns limiting off)")
	burst := fs.Int("burst", server.DefaultBurst, "per-instance burst")
	maxConns := fs.Int("max-conns-per-source", guestnet.DefaultMaxConnsPerSource, "open guest connections allowed per source: per host interface on its listener, per address on the device-less one (-1: no bound)")
	maxGuestConns := fs.Int("max-guest-conns", guestnet.DefaultMaxGuestConns, "open guest connections of registered instances allowed in all (-1: no bound); sources that match no instance count against --max-unknown-conns instead")
	maxUnknownConns := fs.Int("max-unknown-conns", guestnet.DefaultMaxUnknownConns, "open guest connections allowed in all to sources that match no registered instance (they get a 404), apart from --max-guest-conns so they cannot starve registered guests (-1: no bound)")
	maxPolls := fs.Int("max-polls-per-instance", server.DefaultMaxParked, "parked long-polls per instance; past it the oldest is answered 304 (-1: no bound)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	grace := fs.Duration("shutdown-timeout", 10*time.Second, "how long shutdown waits for requests in flight")
	dialects := fs.String("dialects", dialect.DefaultList, "guest API dialects: any of native, ec2, azure, gce (comma separated)")
	ec2Tokens := fs.String("ec2-tokens", "optional", "EC2 IMDSv2 tokens: optional (IMDSv1 allowed) or required")
	zone := fs.String("availability-zone", dialect.DefaultAvailabilityZone, "availability zone the EC2 and GCE dialects report")
	region := fs.String("region", "", "region the EC2 and Azure dialects report (default: the zone without its last letter)")
	gceProject := fs.String("gce-project", dialect.DefaultGCEProjectID, "project id the GCE dialect reports")
	fs.StringVar(gceProject, "gce-project-id", dialect.DefaultGCEProjectID, "same as --gce-project")
	storeOpts := addStoreFlags(fs)
	return func(stderr io.Writer) error {
		log, err := newLogger(stderr, *logFormat, *logLevel)
		if err != nil {
			return err
		}
		if len(*ifaces) > 0 && *listen == "" {
			return cli.Usagef("--guest-interface needs --listen")
		}
		if (*adminListen == "") != (*tokenFile == "") {
			return cli.Usagef("--admin-listen and --admin-token-file go together")
		}
		var token string
		if *tokenFile != "" {
			if token, err = readAdminToken(*tokenFile); err != nil {
				return err
			}
		}

		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()

		names, err := dialect.ParseList(*dialects)
		if err != nil {
			return cli.Usagef("--dialects: %v", err)
		}
		tokens, err := dialect.ParseTokenMode(*ec2Tokens)
		if err != nil {
			return cli.Usagef("--ec2-tokens: %v", err)
		}
		opts := server.Options{
			StartContext: ctx,
			DataDir:      *dataDir,
			Rate:         *rate,
			Burst:        *burst,
			Logger:       log,
			PublishDir:   *publishDir,

			MaxConnsPerSource:    *maxConns,
			MaxParkedPerInstance: *maxPolls,
			MaxGuestConns:        *maxGuestConns,
			MaxUnknownConns:      *maxUnknownConns,
		}
		if *maxConns == 0 || *maxPolls == 0 || *maxGuestConns == 0 || *maxUnknownConns == 0 {
			return cli.Usagef("--max-conns-per-source, --max-polls-per-instance, --max-guest-conns and --max-unknown-conns must be positive or -1")
		}
		if len(names) != 1 || names[0] != dialect.NameNative {
			set, err := dialect.New(names, dialect.Settings{
				AvailabilityZone: *zone,
				Region:           *region,
				GCEProjectID:     *gceProject,
				EC2Tokens:        tokens,
				Logger:           log,
			})
			if err != nil {
				return cli.Usagef("%v", err)
			}
			opts.Dialects = set
		}
		if *listen != "" && (*bindIfaces || len(*ifaces) > 0) {
			opts.BindInterfaces, opts.GuestInterfaces = true, *ifaces
		}
		es, err := storeOpts.open(log)
		if err != nil {
			return err
		}
		if es != nil {
			// server.New follows its feed: it returns once the index holds
			// this host's instances, or etcd is known to be down (then
			// degraded, filled when it answers).
			opts.Store = es
		}
		// The device-bound guest listeners share the device-less one's
		// address and are opened through it, so they are newer, as the kernel's
		// SO_REUSEPORT lookup needs (guestnet; e2e TestIMDSListenerOrder).
		var guestLn *guestnet.Listener
		if *listen != "" {
			if guestLn, err = guestnet.Listen(ctx, *listen); err != nil {
				if es != nil {
					es.Close()
				}
				return err
			}
			opts.GuestListener = guestLn
		}
		srv, err := server.New(opts)
		if err != nil {
			if guestLn != nil {
				guestLn.Close()
			}
			if es != nil {
				es.Close()
			}
			return err
		}
		type serveFn func() error
		var fns []serveFn
		var lns []net.Listener
		fail := func(err error) error {
			for _, ln := range lns {
				ln.Close()
			}
			srv.Shutdown(context.Background())
			if es != nil {
				es.Close()
			}
			return err
		}
		if guestLn != nil {
			lns = append(lns, guestLn)
			fns = append(fns, func() error { return srv.ServeGuest(guestLn, "") })
		}
		if *adminSocket != "" {
			ln, err := server.ListenAdminSocket(*adminSocket, 0o660)
			if err != nil {
				return fail(err)
			}
			lns = append(lns, ln)
			fns = append(fns, func() error { return srv.ServeAdmin(ln, "") })
		}
		if *adminListen != "" {
			ln, err := net.Listen("tcp", *adminListen)
			if err != nil {
				return fail(fmt.Errorf("admin listen: %w", err))
			}
			lns = append(lns, ln)
			fns = append(fns, func() error { return srv.ServeAdmin(ln, token) })
		}
		if len(fns) == 0 {
			return fail(cli.Usagef("nothing to serve (no --listen, --admin-socket or --admin-listen)"))
		}
		errc := make(chan error, len(fns))
		for _, fn := range fns {
			go func() { errc <- fn() }()
		}
		log.Info("prewarm-imds ready", "pid", os.Getpid())
		go srv.NotifySystemd(ctx) // READY=1, then STATUS= (Type=notify)
		var serveErr error
		select {
		case <-ctx.Done():
			log.Info("signal received, shutting down")
		case serveErr = <-errc:
			log.Error("listener failed, shutting down", "err", serveErr)
		}
		sctx, cancel := context.WithTimeout(context.Background(), *grace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error("shutdown", "err", err)
		}
		if es != nil {
			if err := es.Close(); err != nil {
				log.Error("close etcd store", "err", err)
			}
		}
		return serveErr
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	h, err := cli.LogHandler(w, format, level, "prewarm-imds serve")
	if err != nil {
		return nil, err
	}
	return slog.New(h).With("component", "imds"), nil
}
