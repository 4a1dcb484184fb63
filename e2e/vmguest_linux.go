package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// VMMode is $PREWARM_E2E_VM: "0" skips the VM tests, "full" adds the long
// one, anything else runs the reduced one (when QEMU is installed).
func VMMode() string { return os.Getenv("PREWARM_E2E_VM") }

// RequireVM skips unless QEMU can run here (and the mode allows it).
func RequireVM(t testing.TB, full bool) {
	t.Helper()
	RequireRoot(t)
	if VMMode() == "0" {
		t.Skip("e2e VM: PREWARM_E2E_VM=0")
	}
	if full && VMMode() != "full" {
		t.Skip("e2e VM: the long VM test runs with PREWARM_E2E_VM=full (make e2e-vm)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "dpkg-deb", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("e2e VM: %s not installed (apt-get install qemu-system-x86): %v", tool, err)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("e2e VM: no /dev/net/tun: %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("e2e VM: no /bin/busybox (apt-get install busybox-static)")
	}
}

// udhcpcScript configures the lease udhcpc got. It rewrites the address
// on every bound/renew, so a renewal is always visible as an address
// event (busybox ip has no lifetimes to refresh).
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
  ip addr flush dev "$interface"
  ip link set "$interface" up ;;
bound|renew)
  ip addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" dev "$interface"
  for r in $router; do ip route add default via "$r" dev "$interface"; break; done
  echo "PWE lease $interface $ip" ;;
esac
exit 0
`

// vmInit is the VM's /init: mounts, virtio modules, NICs up, udhcpc on
// eth0 (or, with dhcp VMDHCPBuiltin, no DHCP client of the image's: the
// agent's built-in one leases eth0, as in the pool's golden image), then
// the agent (or, without one, a reporter of eth0's carrier counter), with
// everything on the serial console.
func vmInit(withAgent bool, dhcp string, trace bool) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
for m in ` + strings.Join(vmModules, " ") + `; do insmod /lib/modules/$m.ko 2>/dev/null; done
ip link set lo up
for i in eth0 eth1; do ip link set "$i" up 2>/dev/null; done
hostname pool-vm
echo "PWE booted $(cut -d' ' -f1 /proc/uptime)s"
`)
	agentOpts := ""
	if withAgent && dhcp == VMDHCPBuiltin {
		agentOpts = " --dhcp-client=builtin"
	} else {
		b.WriteString("udhcpc -i eth0 -s /etc/udhcpc.script -f -t 5 -T 1 -A 1 >/dev/console 2>&1 &\n")
	}
	if withAgent {
		b.WriteString(`echo PWE-READY
/bin/prewarm-agent run --imds-url http://169.254.169.254 --interfaces eth0 --log-level debug` + agentOpts + ` >/dev/console 2>&1 &
# What the tests check in the guest, printed when it changes: the
# applied state, and the NICs' operational state (the kernel sets it
# when its link watch has run after a carrier change).
last= lastlink=
while :; do
  s="hostname=$(hostname) localtime=$(readlink /etc/localtime)"
  if [ "$s" != "$last" ]; then echo "PWE state $s"; last=$s; fi
  s="eth0=$(cat /sys/class/net/eth0/operstate) eth1=$(cat /sys/class/net/eth1/operstate)"
  if [ "$s" != "$lastlink" ]; then echo "PWE link $s"; lastlink=$s; fi
  sleep 0.5
done &
`)
	} else {
		b.WriteString(`echo PWE-READY
last=
while :; do
  c=$(cat /sys/class/net/eth0/carrier_changes)
  if [ "$c" != "$last" ]; then echo "PWE carrier_changes=$c carrier=$(cat /sys/class/net/eth0/carrier)"; last=$c; fi
  sleep 0.2
done &
`)
	}
	if trace {
		// PREWARM_VM_TRACE=1: eth0's carrier counter, carrier and
		// operational state on the console whenever they change, with the
		// guest's uptime, next to the agent's and udhcpc's lines.
		b.WriteString(`last=
while :; do
  c="carrier_changes=$(cat /sys/class/net/eth0/carrier_changes) carrier=$(cat /sys/class/net/eth0/carrier) operstate=$(cat /sys/class/net/eth0/operstate) flags=$(cat /sys/class/net/eth0/flags)"
  if [ "$c" != "$last" ]; then echo "PWE trace $(cut -d' ' -f1 /proc/uptime)s eth0 $c"; last=$c; fi
  sleep 0.05
done &
`)
	}
	b.WriteString(`while :; do wait; sleep 60; done
`)
	return b.String()
}

// VMLab is a host namespace with two taps (tap1 for the VM's eth0, tap2
// for its eth1), dnsmasq and (with the agent) prewarm-imds, and a booted VM.
type VMLab struct {
	*Lab
	VM   *VM
	NIC0 *Guest // eth0: the managed NIC, netdev n0
	NIC1 *Guest // eth1: netdev n1, bounced for the "earlier link event"
	Boot time.Time

	// host steps stamped with their time, for TraceFile ($PREWARM_VM_TRACE=1)
	traceMu sync.Mutex
	trace   []stamped
}

type stamped struct {
	at   time.Time
	line string
}

// tracing is $PREWARM_VM_TRACE=1: the guest prints eth0's carrier state
// as it changes, and the host's steps are recorded for TraceFile.
func tracing() bool { return os.Getenv("PREWARM_VM_TRACE") == "1" }

// Tracef records a host step (with $PREWARM_VM_TRACE=1).
func (vl *VMLab) Tracef(format string, args ...any) {
	if !tracing() {
		return
	}
	vl.traceMu.Lock()
	vl.trace = append(vl.trace, stamped{time.Now(), fmt.Sprintf(format, args...)})
	vl.traceMu.Unlock()
}

// The DHCP clients a VM guest can lease eth0 with (StartVMLabDHCP).
const (
	VMDHCPUdhcpc  = "udhcpc"  // busybox udhcpc started by /init; the agent renews through it
	VMDHCPBuiltin = "builtin" // the agent's built-in client (--dhcp-client=builtin)
)

// StartVMLab builds the initramfs and boots the VM. With the agent, the
// IMDS runs and vm-1 is registered by tap1 before the VM boots (and
// beforeBoot, if set, runs then: the pool's placeholder publish). The
// guest leases eth0 with udhcpc.
func StartVMLab(t *testing.T, ctx context.Context, withAgent bool, beforeBoot func(*VMLab)) *VMLab {
	t.Helper()
	return StartVMLabDHCP(t, ctx, withAgent, VMDHCPUdhcpc, beforeBoot)
}

// StartVMLabDHCP is StartVMLab with the guest's DHCP client named
// (VMDHCPUdhcpc or VMDHCPBuiltin; builtin needs the agent).
func StartVMLabDHCP(t *testing.T, ctx context.Context, withAgent bool, dhcp string, beforeBoot func(*VMLab)) *VMLab {
	t.Helper()
	if dhcp != VMDHCPUdhcpc && dhcp != VMDHCPBuiltin {
		t.Fatalf("VM DHCP client %q: want %q or %q", dhcp, VMDHCPUdhcpc, VMDHCPBuiltin)
	}
	k := DebianKernel(t)
	l := NewHostLab(t)
	keepLogs(t, l)
	vl := &VMLab{Lab: l}
	vl.NIC0 = l.AddTap(1)
	vl.NIC1 = l.AddTap(2)
	l.StartDnsmasq()
	spec := InitramfsSpec{
		Init: vmInit(withAgent, dhcp, os.Getenv("PREWARM_VM_TRACE") == "1"),
		Text: map[string]string{
			"/etc/udhcpc.script": udhcpcScript,
			"/etc/hostname":      "pool-vm\n",
			"/etc/hosts":         "127.0.0.1 localhost\n",
			"/etc/passwd":        "root:x:0:0:root:/root:/bin/sh\n",
			"/etc/group":         "root:x:0:\n",
		},
		Files: map[string]string{},
	}
	for _, z := range []string{"UTC", "Europe/Berlin"} {
		if _, err := os.Stat("/usr/share/zoneinfo/" + z); err == nil {
			spec.Files["/usr/share/zoneinfo/"+z] = "/usr/share/zoneinfo/" + z
		}
	}
	if withAgent {
		spec.Files["/bin/prewarm-agent"] = Bins(t).Agent
		l.StartIMDS()
		vl.NIC0.Register(ctx)
	}
	if beforeBoot != nil {
		beforeBoot(vl)
	}
	initrd := filepath.Join(l.HostDir, "initrd.cpio")
	if err := BuildInitramfs(k, spec, initrd); err != nil {
		t.Fatal(err)
	}
	vl.Boot = time.Now()
	vm, err := l.StartVM(ctx, k, initrd, "PWE-READY")
	if err != nil {
		t.Fatal(err)
	}
	vl.VM = vm
	t.Logf("VM: console ready %v after QEMU start", time.Since(vl.Boot).Round(time.Millisecond))
	return vl
}

// AwaitLinksSettled waits until the guest's NICs are operationally up
// (the agent's guest prints them) and then for reports to pause (quiet).
// The kernel's link watch sets the operational state up to a second after
// the carrier came at boot, and a bounce within a second of a link-watch
// run is held back until a second after it (HARNESS.md): a claim sooner
// measures that rate limit, not the claim.
func (vl *VMLab) AwaitLinksSettled(ctx context.Context, rep *Reports, quiet time.Duration) error {
	if _, _, err := vl.ConsoleWait(ctx, 0, "PWE link eth0=up eth1=up"); err != nil {
		return err
	}
	vl.Tracef("guest NICs operationally up")
	rep.Settle(ctx, quiet, 10*quiet)
	return nil
}

// ShortBounce is the hard case of HARNESS.md: a bounce of eth1 (an
// earlier link event), then at once eth0 off and on again within hold
// (< 0.5 s). The guest sees no DOWN for eth0, only a carrier-up message
// with the change counter up by 2. It returns when eth0 was set on.
func (vl *VMLab) ShortBounce(hold time.Duration) (time.Time, error) {
	m := vl.VM.Monitor
	if _, err := m.SetLink("n1", false); err != nil {
		return time.Time{}, err
	}
	if _, err := m.SetLink("n1", true); err != nil {
		return time.Time{}, err
	}
	if _, err := m.SetLink("n0", false); err != nil {
		return time.Time{}, err
	}
	time.Sleep(hold) // the bounce's length: the stimulus, not a wait for a result
	return m.SetLink("n0", true)
}

// ConsoleWait waits for a console line containing substr after line from.
func (vl *VMLab) ConsoleWait(ctx context.Context, from int, substr string) (string, int, error) {
	s, i, err := vl.VM.QEMU.Log.WaitFrom(ctx, from, substr)
	if err != nil {
		return s, i, fmt.Errorf("VM console: %w", err)
	}
	return s, i, nil
}

// keepLogs, with $PREWARM_E2E_KEEP naming a directory, copies the lab's
// process logs (qemu.log is the VM's whole serial console, dnsmasq.log,
// imds.log) into a directory of its own there when the test ends, and
// logs its path: the lab's own directory is a t.TempDir, removed then.
// Registered before the processes start, it runs after they stopped.
func keepLogs(t testing.TB, l *Lab) {
	dir := os.Getenv("PREWARM_E2E_KEEP")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		dst := filepath.Join(dir, fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().Format("150405.000")))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Logf("keep logs: %v", err)
			return
		}
		logs, _ := filepath.Glob(filepath.Join(l.HostDir, "*.log"))
		for _, p := range logs {
			b, err := os.ReadFile(p)
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o644)
			}
			if err != nil {
				t.Logf("keep logs: %v", err)
			}
		}
		t.Logf("logs kept in %s (PREWARM_E2E_KEEP)", dst)
	})
}

// TraceFile writes, with $PREWARM_VM_TRACE=1, the console's lines stamped
// with the host time they arrived (clk) merged with the host's steps
// (Tracef) into the lab's directory as trace.log (kept with
// $PREWARM_E2E_KEEP), in the order of those times.
func (vl *VMLab) TraceFile(clk *ConsoleClock) {
	if !tracing() {
		return
	}
	var all []stamped
	lines := vl.VM.QEMU.Log.Lines()
	clk.mu.Lock()
	for i, s := range lines {
		at, ok := clk.at[i]
		if !ok {
			continue
		}
		all = append(all, stamped{at, "console " + s})
	}
	clk.mu.Unlock()
	vl.traceMu.Lock()
	for _, s := range vl.trace {
		all = append(all, stamped{s.at, "host    " + s.line})
	}
	vl.traceMu.Unlock()
	slices.SortStableFunc(all, func(a, b stamped) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for _, s := range all {
		fmt.Fprintf(&b, "%s %s\n", s.at.Format("15:04:05.000"), s.line)
	}
	p := filepath.Join(vl.HostDir, "trace.log")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		vl.T.Logf("trace: %v", err)
	}
}
