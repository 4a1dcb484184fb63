package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/prewarm/prewarm/imds/client"
	poolcfg "github.com/prewarm/prewarm/pool/config"
	"github.com/prewarm/prewarm/pool/controller"
	"github.com/prewarm/prewarm/pool/virt"
	"github.com/prewarm/prewarm/shared/cli"
)

func serveCmd() *cobra.Command {
	var cfgPath, logFormat, logLevel string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the controller: keep the warm pools, answer claims on the admin socket",
		Long: `serve reads the pool's config file (JSON or YAML: libvirt, the IMDS admin
socket, networks, flavors and their warm targets; docs/pool.md), adopts the
VMs a previous run left, boots the warm pools up to their targets and
answers claim, status and release on the config's admin socket until
SIGTERM or SIGINT. It logs to stderr.`,
		Example: `  prewarm-pool serve --config /etc/prewarm/pool.yaml
  PREWARM_POOL_CONFIG=/etc/prewarm/pool.yaml prewarm-pool serve --log-level debug`,
		Args: cli.NoArgs,
	}
	// Not cli.AddConfigFlag: --config is the pool's own structured file,
	// not lines of flag settings.
	cmd.Flags().StringVar(&cfgPath, "config", "", "the pool's config file (JSON or YAML; docs/pool.md); required")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if cfgPath == "" {
			return cli.Usagef("serve wants --config FILE (the pool's config)").WithHint("pass --config or set PREWARM_POOL_CONFIG; docs/pool.md describes the file")
		}
		return serve(cfgPath, logFormat, logLevel, cmd.ErrOrStderr())
	}
	return cmd
}

func serve(cfgPath, logFormat, logLevel string, stderr io.Writer) error {
	log, err := newLogger(stderr, logFormat, logLevel)
	if err != nil {
		return err
	}
	cfg, err := poolcfg.Load(cfgPath)
	if err != nil {
		return err
	}
	for _, d := range []string{cfg.OverlayDir, cfg.ConsoleLogDir, filepath.Dir(cfg.Socket)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := listenUnix(cfg.Socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	hv, err := virt.Dial(cfg.Libvirt)
	if err != nil {
		return err
	}
	defer hv.Close()
	imds := client.NewUnix(cfg.IMDSAdmin)
	// The IMDS may be starting beside us (one unit, one script): give it
	// a few seconds.
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	for wait := 50 * time.Millisecond; ; wait = min(wait*2, time.Second) {
		if err = imds.Healthz(hctx); err == nil {
			break
		}
		select {
		case <-hctx.Done():
		case <-time.After(wait):
			continue
		}
		break
	}
	hcancel()
	if err != nil {
		return fmt.Errorf("prewarm-imds admin API unreachable at %s: %w", cfg.IMDSAdmin, err)
	}
	c := controller.New(cfg, hv, imds, controller.Options{Logger: log})
	if err := c.Start(ctx); err != nil {
		return err
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("prewarm-pool serving", "path", cfg.Socket)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
	}
	stop()
	c.Wait()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// listenUnix listens on the admin socket (mode 0660), replacing a stale
// socket file left by a crashed controller but never a live one's.
func listenUnix(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another prewarm-pool serves %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	h, err := cli.LogHandler(w, format, level, "prewarm-pool serve")
	if err != nil {
		return nil, err
	}
	return slog.New(h).With("component", "pool"), nil
}
