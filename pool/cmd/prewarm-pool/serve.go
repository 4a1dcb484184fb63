package main

import (
	"context"
	"errors"
	"flag"
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

	"github.com/prewarm/prewarm/imds/client"
	poolcfg "github.com/prewarm/prewarm/pool/config"
	"github.com/prewarm/prewarm/pool/controller"
	"github.com/prewarm/prewarm/pool/virt"
)

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (JSON or YAML; docs/pool.md)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *cfgPath == "" {
		return fmt.Errorf("%w: serve --config FILE", errUsage)
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := poolcfg.Load(*cfgPath)
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
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: %v", errUsage, level, err)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)).With("component", "pool"), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)).With("component", "pool"), nil
	}
	return nil, fmt.Errorf("%w: --log-format must be text or json (got %q)", errUsage, format)
}
