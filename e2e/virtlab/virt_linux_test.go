package virtlab

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVirtLive runs pool/virt's TestLibvirtLive (networks, reservations,
// an overlay, a domain with metadata, the re-map and bounce, the lifecycle
// stop event of its destroy) against the lab's libvirtd, inside the lab's
// network and mount namespaces where its bridges live.
func TestVirtLive(t *testing.T) {
	Require(t)
	RequireImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "virt.test")
	if out, err := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "github.com/prewarm/prewarm/pool/virt").CombinedOutput(); err != nil {
		t.Fatalf("go test -c pool/virt: %v\n%s", err, out)
	}
	l := Start(t, Options{})
	cmd := l.Command(ctx, "env", "PREWARM_POOL_LIBVIRT="+l.LibvirtSocket, "PREWARM_POOL_IMAGE="+ImageDir(),
		bin, "-test.run", "^TestLibvirtLive$", "-test.v", "-test.count=1")
	out, err := cmd.CombinedOutput()
	t.Logf("pool/virt in the lab:\n%s", out)
	if err != nil {
		t.Fatalf("TestLibvirtLive in the lab: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestLibvirtLive") {
		t.Fatal("TestLibvirtLive did not run (skipped?)")
	}
}
