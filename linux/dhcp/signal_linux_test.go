package dhcp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWaitDelivered: the renew signal to udhcpc waits until the release
// signal is no longer pending (its pending masks in /proc/PID/status),
// so the two cannot be delivered in the wrong order.
func TestWaitDelivered(t *testing.T) {
	dir := t.TempDir()
	pd := filepath.Join(dir, "42")
	if err := os.MkdirAll(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(shdPnd string) {
		s := "Name:\tudhcpc\nSigPnd:\t0000000000000000\nShdPnd:\t" + shdPnd + "\nSigBlk:\t0000000000000000\n"
		if err := os.WriteFile(filepath.Join(pd, "status"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	write("0000000000000000")
	if err := waitDelivered(ctx, dir, 42, syscall.SIGUSR2); err != nil {
		t.Fatalf("nothing pending: %v", err)
	}
	write("0000000000000200") // SIGUSR1 (10) pending: not the one waited for
	if err := waitDelivered(ctx, dir, 42, syscall.SIGUSR2); err != nil {
		t.Fatalf("another signal pending: %v", err)
	}
	write("0000000000000800") // SIGUSR2 (12) pending
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := waitDelivered(cctx, dir, 42, syscall.SIGUSR2); !errors.Is(err, context.Canceled) {
		t.Fatalf("SIGUSR2 pending, context over: %v, want context.Canceled", err)
	}
	done := make(chan error, 1)
	go func() { done <- waitDelivered(ctx, dir, 42, syscall.SIGUSR2) }()
	write("0000000000000000") // the handler ran
	if err := <-done; err != nil {
		t.Fatalf("after delivery: %v", err)
	}
	if err := waitDelivered(ctx, dir, 7, syscall.SIGUSR2); err != nil {
		t.Fatalf("no such process: %v (the next signal reports it)", err)
	}
}
