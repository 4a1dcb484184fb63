package netmgr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/netlab"
	"github.com/prewarm/prewarm/linux/netmgr"
	"github.com/prewarm/prewarm/linux/network"
	"github.com/prewarm/prewarm/shared/config"
)

// ROOT TEST. linux/network's apply in the booted root (TestManagers'
// harness): a static document for eth0 is persisted for the running
// manager, which loads it through D-Bus and configures eth0 from it (the
// DHCP lease goes); a manager that refuses fails the step with its error.

const netApplyEnv = "PREWARM_NETAPPLY_DOC"

type applyResult struct {
	Actions []string
	Err     string
}

const applyPrefix = "NETAPPLY-RESULT "

// TestInContainerNetwork is the helper's side (skipped unless
// netApplyEnv is set): linux/network's live apply of the network section
// in netApplyEnv, with its state under /run so that a second apply sees
// the first.
func TestInContainerNetwork(t *testing.T) {
	doc := os.Getenv(netApplyEnv)
	if doc == "" {
		t.Skip("the in-container helper of TestManagerApply")
	}
	var n config.Network
	if err := json.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := network.New(network.Options{Root: "/", StateDir: "/run/prewarm-net-state", Live: true, Logger: log})
	res, err := c.ApplyNetwork(ctx, &n)
	r := applyResult{Actions: res.Actions}
	if err != nil {
		r.Err = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Printf("%s%s\n", applyPrefix, b)
}

// apply runs linux/network's apply of a static eth0 with addr (and the
// lab's gateway), or of a DHCP eth0 for addr "dhcp", in the container.
func (l *lab) apply(addr string) applyResult {
	l.t.Helper()
	doc := fmt.Sprintf(`{"interfaces":[{"mac":%q,"addresses":[%q],"gateway4":"10.77.0.1"}]}`, guestMAC, addr)
	if addr == "dhcp" {
		doc = fmt.Sprintf(`{"interfaces":[{"mac":%q,"dhcp4":true}]}`, guestMAC)
	}
	if a, mtu, ok := strings.Cut(addr, " mtu "); ok {
		doc = fmt.Sprintf(`{"interfaces":[{"mac":%q,"addresses":[%q],"gateway4":"10.77.0.1","mtu":%s}]}`, guestMAC, a, mtu)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(l.cpid), "-a", "/run/netmgr.test", "-test.run", "^TestInContainerNetwork$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netApplyEnv+"="+doc)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if js, ok := strings.CutPrefix(line, applyPrefix); ok {
			var r applyResult
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				l.t.Fatalf("apply: %v: %s", err, js)
			}
			l.t.Logf("apply of %s in %v: actions %q, err %q", addr, time.Since(start).Round(time.Millisecond), r.Actions, r.Err)
			return r
		}
	}
	l.t.Fatalf("apply helper printed no result (%v):\n%s", err, out)
	return applyResult{}
}

// defaults is the container's IPv4 default routes, one per line.
func (l *lab) defaults() []string {
	out, _ := l.inside("ip", "-4", "route", "show", "default")
	var rs []string
	for _, r := range strings.Split(out, "\n") {
		if r = strings.TrimSpace(r); r != "" {
			rs = append(rs, r)
		}
	}
	return rs
}

func hasAction(acts []string, sub string) bool {
	return slices.ContainsFunc(acts, func(a string) bool { return strings.Contains(a, sub) })
}

func TestManagerApply(t *testing.T) {
	netlab.RequireRoot(t, "debootstrap", "systemd-nspawn", "dnsmasq", "zstd", "nsenter", "chroot", "tar")
	root := testRoot(t)
	file := "10-prewarm-" + strings.ReplaceAll(guestMAC, ":", "") + ".network"

	t.Run("networkd", func(t *testing.T) {
		unit := t.TempDir() + "/20-eth0.network"
		if err := os.WriteFile(unit, []byte("[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		l := boot(t, root, "10.77.0.50",
			[]string{"--bind-ro=" + unit + ":/etc/systemd/network/20-eth0.network"},
			[]string{"systemd.mask=NetworkManager.service", "systemd.wants=systemd-networkd.service"})
		c := dial(t, l)
		awaitLease(t, func(ctx context.Context) (netmgr.Lease, error) { return c.NetworkdLease(ctx, "eth0") }, "10.77.0.50/24")
		l.installHelper()

		r := l.apply("10.77.0.200/24")
		if r.Err != "" || !hasAction(r.Actions, "systemd-networkd configured eth0") {
			t.Fatalf("apply: %+v, want networkd to configure eth0", r)
		}
		// networkd's own view: the link configured from the agent's file,
		// the static address its own, no lease.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if lease, err := c.NetworkdLease(ctx, "eth0"); err != nil || lease.Valid() {
			t.Fatalf("networkd's lease after the static apply: %+v, %v; want none", lease, err)
		}
		status, err := l.inside("networkctl", "status", "--no-pager", "--lines=0", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(status, file) || !strings.Contains(status, "10.77.0.200") || strings.Contains(status, "10.77.0.50") || !strings.Contains(status, "routable") {
			t.Fatalf("networkctl status eth0 after the static apply:\n%s", status)
		}
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.200/24"}) {
			t.Fatalf("eth0 has %v, want only the document's 10.77.0.200/24", a)
		}
		if d := l.defaults(); len(d) != 1 || !strings.Contains(d[0], "via 10.77.0.1") {
			t.Fatalf("default routes %q, want one via 10.77.0.1", d)
		}
		// Again: nothing to do, nothing changes.
		if r := l.apply("10.77.0.200/24"); r.Err != "" || len(r.Actions) != 0 {
			t.Fatalf("second apply: %+v, want no actions", r)
		}
		// A new address: networkd moves with the document.
		if r := l.apply("10.77.0.201/24"); r.Err != "" || !hasAction(r.Actions, "systemd-networkd configured eth0") {
			t.Fatalf("apply of a new address: %+v", r)
		}
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.201/24"}) {
			t.Fatalf("eth0 has %v, want only 10.77.0.201/24", a)
		}
		// Back to DHCP: the agent's file goes, networkd reloads and its
		// own DHCP configuration takes the link again.
		if r := l.apply("dhcp"); r.Err != "" || !hasAction(r.Actions, "reload systemd-networkd for eth0") {
			t.Fatalf("apply of dhcp4: %+v, want networkd reloaded", r)
		}
		awaitLease(t, func(ctx context.Context) (netmgr.Lease, error) { return c.NetworkdLease(ctx, "eth0") }, "10.77.0.50/24")
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.50/24"}) {
			t.Fatalf("eth0 has %v back on DHCP, want only the lease 10.77.0.50/24", a)
		}

		// An MTU under IPv6's minimum: networkd keeps it (no IPv6
		// link-local address in the agent's file), and says so.
		if r := l.apply("10.77.0.203/24 mtu 1200"); r.Err != "" {
			t.Fatalf("apply with mtu 1200: %+v", r)
		}
		if out, _ := l.inside("networkctl", "status", "--no-pager", "--lines=0", "eth0"); !strings.Contains(out, "MTU: 1200") || !strings.Contains(out, "10.77.0.203") {
			t.Fatalf("networkctl status eth0 after the apply with mtu 1200:\n%s", out)
		}
		// A file that sorts first leaves eth0 unmanaged: networkd does not
		// configure it from the agent's file, and the step fails saying so.
		if _, err := l.inside("sh", "-c", "printf '[Match]\\nName=eth0\\n\\n[Link]\\nUnmanaged=yes\\n' >/etc/systemd/network/05-eth0.network"); err != nil {
			t.Fatal(err)
		}
		r = l.apply("10.77.0.202/24")
		if !strings.Contains(r.Err, "systemd-networkd") || !strings.Contains(r.Err, "unmanaged") {
			t.Fatalf("apply beside an unmanaged-making file: %+v, want networkd's unmanaged state in the error", r)
		}
	})

	t.Run("NetworkManager", func(t *testing.T) {
		l := boot(t, root, "10.77.0.60", nil, nil)
		l.installHelper()
		awaitLease(t, func(context.Context) (netmgr.Lease, error) {
			r := l.helper("nm-lease", "eth0", "")
			if r.Err != "" {
				return r.Lease, fmt.Errorf("%s", r.Err)
			}
			return r.Lease, nil
		}, "10.77.0.60/24")

		r := l.apply("10.77.0.210/24")
		if r.Err != "" || !hasAction(r.Actions, "NetworkManager configured eth0") {
			t.Fatalf("apply: %+v, want NetworkManager to configure eth0", r)
		}
		if lr := l.helper("nm-lease", "eth0", ""); lr.Err != "" || lr.Lease.Valid() {
			t.Fatalf("NetworkManager's lease after the static apply: %+v; want none", lr)
		}
		// NetworkManager's own view of the device (nmcli reads it over
		// D-Bus): the agent's profile, the document's address.
		view, err := l.inside("nmcli", "-t", "-f", "GENERAL.CONNECTION,GENERAL.STATE,IP4.ADDRESS", "device", "show", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(view, "GENERAL.CONNECTION:prewarm-eth0") || !strings.Contains(view, "IP4.ADDRESS[1]:10.77.0.210/24") || strings.Contains(view, "IP4.ADDRESS[2]") || !strings.Contains(view, "(connected)") {
			t.Fatalf("nmcli device show eth0 after the static apply:\n%s", view)
		}
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.210/24"}) {
			t.Fatalf("eth0 has %v, want only the document's 10.77.0.210/24", a)
		}
		if d := l.defaults(); len(d) != 1 || !strings.Contains(d[0], "via 10.77.0.1") {
			t.Fatalf("default routes %q, want one via 10.77.0.1", d)
		}
		if r := l.apply("10.77.0.210/24"); r.Err != "" || len(r.Actions) != 0 {
			t.Fatalf("second apply: %+v, want no actions", r)
		}
		// A new address: the active profile is reapplied in place (the
		// same active connection), not deactivated and activated again.
		conPath := func() string {
			out, err := l.inside("nmcli", "-g", "GENERAL.CON-PATH", "device", "show", "eth0")
			if err != nil || out == "" {
				t.Fatalf("nmcli GENERAL.CON-PATH: %q, %v", out, err)
			}
			return out
		}
		activeBefore := conPath()
		if r := l.apply("10.77.0.211/24"); r.Err != "" || !hasAction(r.Actions, "NetworkManager configured eth0") {
			t.Fatalf("apply of a new address: %+v", r)
		}
		if after := conPath(); after != activeBefore {
			t.Fatalf("active connection %s became %s: the profile was activated again, not reapplied", activeBefore, after)
		}
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.211/24"}) {
			t.Fatalf("eth0 has %v, want only 10.77.0.211/24", a)
		}
		// Back to DHCP: the agent's keyfile goes, NetworkManager reloads
		// and activates a DHCP profile of its own again.
		if r := l.apply("dhcp"); r.Err != "" || !hasAction(r.Actions, "reload NetworkManager for eth0") {
			t.Fatalf("apply of dhcp4: %+v, want NetworkManager reloaded", r)
		}
		awaitLease(t, func(context.Context) (netmgr.Lease, error) {
			r := l.helper("nm-lease", "eth0", "")
			if r.Err != "" {
				return r.Lease, fmt.Errorf("%s", r.Err)
			}
			return r.Lease, nil
		}, "10.77.0.60/24")
		if a := l.eth0(); !slices.Equal(a, []string{"10.77.0.60/24"}) {
			t.Fatalf("eth0 has %v back on DHCP, want only the lease 10.77.0.60/24", a)
		}

		// A device NetworkManager's configuration leaves unmanaged (not
		// "nmcli device set eth0 managed no", which an activation
		// overrides): it refuses the activation, and the step fails with
		// its error.
		if _, err := l.inside("sh", "-c", "printf '[keyfile]\\nunmanaged-devices=interface-name:eth0\\n' >/etc/NetworkManager/conf.d/99-unmanaged.conf && nmcli general reload conf"); err != nil {
			t.Fatal(err)
		}
		r = l.apply("10.77.0.212/24")
		if !strings.Contains(r.Err, "NetworkManager ActivateConnection eth0") || !strings.Contains(r.Err, "org.freedesktop.NetworkManager") {
			t.Fatalf("apply on an unmanaged device: %+v, want NetworkManager's refusal", r)
		}
	})
}
