package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// Binaries are the paths of the binaries under test.
type Binaries struct {
	IMDS, Agent string
}

var (
	binsOnce sync.Once
	bins     Binaries
	binsErr  error
	binsDir  string
)

// Bins builds prewarm-imds and prewarm-agent once per test binary (static,
// so the agent also runs in the VM's initramfs), or takes them from
// $PREWARM_BIN. A build failure fails the test.
func Bins(t testing.TB) Binaries {
	t.Helper()
	binsOnce.Do(func() {
		if d := os.Getenv("PREWARM_BIN"); d != "" {
			bins = Binaries{IMDS: filepath.Join(d, "prewarm-imds"), Agent: filepath.Join(d, "prewarm-agent")}
			for _, p := range []string{bins.IMDS, bins.Agent} {
				if _, binsErr = os.Stat(p); binsErr != nil {
					return
				}
			}
			return
		}
		binsDir, binsErr = os.MkdirTemp("", "pwe-bin-")
		if binsErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binsDir+"/",
			"github.com/prewarm/prewarm/imds/cmd/prewarm-imds",
			"github.com/prewarm/prewarm/agent/cmd/prewarm-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binsErr = &buildError{err: err, out: string(out)}
			return
		}
		bins = Binaries{IMDS: filepath.Join(binsDir, "prewarm-imds"), Agent: filepath.Join(binsDir, "prewarm-agent")}
	})
	if binsErr != nil {
		t.Fatalf("e2e: binaries: %v", binsErr)
	}
	return bins
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

// removeBins deletes the binaries Bins built (TestMain calls it).
func removeBins() {
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
}

func registration(hostIf string) api.Registration {
	return api.Registration{HostInterface: hostIf, Labels: map[string]string{"e2e": "true"}}
}
