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

// dhclientHookName is the guest's dhclient script, in its private /etc.
const dhclientHookName = "prewarm-e2e-dhclient-script"

// dhclientHook is a minimal dhclient-script: it sets the lease's address
// (removing other DHCP addresses, never static ones) and the default route,
// and writes no resolv.conf and no hostname.
const dhclientHook = `#!/bin/sh
plen() {
  n=0; IFS=.
  for o in $1; do
    case $o in 255) n=$((n+8));; 254) n=$((n+7));; 252) n=$((n+6));; 248) n=$((n+5));;
      240) n=$((n+4));; 224) n=$((n+3));; 192) n=$((n+2));; 128) n=$((n+1));; esac
  done
  unset IFS; echo $n
}
dyn() { ip -4 -o addr show dev "$interface" dynamic | awk '{print $4}'; }
case "$reason" in
PREINIT)
  ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
  p=$(plen "$new_subnet_mask")
  for a in $(dyn); do [ "$a" = "$new_ip_address/$p" ] || ip -4 addr del "$a" dev "$interface"; done
  lt=${new_dhcp_lease_time:-3600}
  ip -4 addr replace "$new_ip_address/$p" dev "$interface" valid_lft "$lt" preferred_lft "$lt"
  for r in $new_routers; do ip -4 route replace default via "$r" dev "$interface"; break; done ;;
EXPIRE|FAIL|RELEASE|STOP)
  for a in $(dyn); do ip -4 addr del "$a" dev "$interface"; done ;;
esac
exit 0
`
