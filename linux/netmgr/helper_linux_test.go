package netmgr_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/linux/dhcp"
	"github.com/prewarm/prewarm/linux/netmgr"
)

// NetworkManager authorizes a caller by its PID, which its bus cannot see
// for a process outside the container's PID namespace ("Unable to
// determine UID of the request"). So its calls run inside the container,
// as the agent's do: this test binary, copied into the container, runs
// TestInContainer there (helperEnv set) with netmgr.Dial's default bus,
// and prints one result line.

const helperEnv = "PREWARM_NETMGR_HELPER"

// result is what TestInContainer prints after resultPrefix.
type result struct {
	Lease      netmgr.Lease
	Renewed    agent.Lease // dhcp-renew's
	Err        string
	Manager    *netmgr.Error
	NotRunning bool
}

const resultPrefix = "NETMGR-RESULT "

// TestInContainer is the helper's side (skipped unless helperEnv is set):
// op (nm-lease, nm-renew, dhcp-renew: linux/dhcp's renewer) on iface, with the host name to send.
func TestInContainer(t *testing.T) {
	op := os.Getenv(helperEnv)
	if op == "" {
		t.Skip("the in-container helper of TestManagers")
	}
	iface, host := os.Getenv("NETMGR_IFACE"), os.Getenv("NETMGR_HOSTNAME")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var r result
	c, err := netmgr.Dial(ctx)
	if err == nil {
		defer c.Close()
		switch op {
		case "nm-lease":
			r.Lease, err = c.NMLease(ctx, iface)
		case "nm-renew":
			r.Lease, err = c.NMRenew(ctx, iface, netmgr.NMOptions{Hostname: host})
		case "dhcp-renew":
			// The agent's renewer, finding the interface's owner itself.
			var rn *dhcp.Renewer
			if rn, err = dhcp.New(dhcp.Options{StateDir: t.TempDir(), Timeout: 40 * time.Second}); err == nil {
				r.Renewed, err = rn.RenewDHCP(ctx, iface)
			}
		default:
			err = fmt.Errorf("unknown op %q", op)
		}
	}
	if err != nil {
		r.Err = err.Error()
		errors.As(err, &r.Manager)
		r.NotRunning = errors.Is(err, netmgr.ErrNotRunning)
	}
	b, _ := json.Marshal(r)
	fmt.Printf("%s%s\n", resultPrefix, b)
}

// installHelper copies this test binary into the container (its /run).
func (l *lab) installHelper() {
	self, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		l.t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(fmt.Sprintf("/proc/%d/root/run/netmgr.test", l.cpid), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		l.t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		l.t.Fatal(err)
	}
}

// helper runs op in the container and returns its result.
func (l *lab) helper(op, iface, hostname string) result {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(l.cpid), "-a", "/run/netmgr.test", "-test.run", "^TestInContainer$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+op, "NETMGR_IFACE="+iface, "NETMGR_HOSTNAME="+hostname)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if js, ok := strings.CutPrefix(line, resultPrefix); ok {
			var r result
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				l.t.Fatalf("helper %s: %v: %s", op, err, js)
			}
			return r
		}
	}
	l.t.Fatalf("helper %s printed no result (%v):\n%s", op, err, out)
	return result{}
}
