package virtlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
)

var (
	imdsOnce sync.Once
	imdsPath string
	imdsErr  error
)

// imdsBinary builds prewarm-imds once (or takes $PREWARM_BIN/prewarm-imds).
func imdsBinary(t *testing.T) string {
	t.Helper()
	imdsOnce.Do(func() {
		if d := os.Getenv("PREWARM_BIN"); d != "" {
			imdsPath = filepath.Join(d, "prewarm-imds")
			_, imdsErr = os.Stat(imdsPath)
			return
		}
		dir, err := os.MkdirTemp("", "pwv-bin-")
		if err != nil {
			imdsErr = err
			return
		}
		imdsPath = filepath.Join(dir, "prewarm-imds")
		cmd := exec.Command("go", "build", "-trimpath", "-o", imdsPath, "github.com/prewarm/prewarm/imds/cmd/prewarm-imds")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			imdsErr = fmt.Errorf("go build prewarm-imds: %w\n%s", err, out)
		}
	})
	if imdsErr != nil {
		t.Fatal(imdsErr)
	}
	return imdsPath
}

// TestLabNamespace: the lab's libvirtd answers, its state is private (a
// network defined in the lab is not in this machine's /etc/libvirt), and
// everything dies with the namespace.
func TestLabNamespace(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := Start(t, Options{})
	if out, err := l.Virsh(ctx, "hostname"); err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("virsh hostname = %q, %v", out, err)
	}
	xml := filepath.Join(l.Dir, "net.xml")
	os.WriteFile(xml, []byte(`<network><name>pwv-selftest</name><bridge name='pwvself0'/>
<ip address='10.99.0.1' netmask='255.255.255.0'><dhcp><range start='10.99.0.100' end='10.99.0.110'/></dhcp></ip></network>`), 0o644)
	if _, err := l.Virsh(ctx, "net-define", xml); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Virsh(ctx, "net-start", "pwv-selftest"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/libvirt/qemu/networks/pwv-selftest.xml"); err == nil {
		t.Fatal("the lab's network definition reached this machine's /etc/libvirt/qemu/networks")
	}
	pool := filepath.Join(l.Dir, "pool.xml")
	os.WriteFile(pool, []byte(`<pool type='dir'><name>pwv-selftest</name><target><path>`+l.Dir+`</path></target></pool>`), 0o644)
	if _, err := l.Virsh(ctx, "pool-define", pool); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Virsh(ctx, "pool-autostart", "pwv-selftest"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"/etc/libvirt/storage/pwv-selftest.xml", "/etc/libvirt/storage/autostart/pwv-selftest.xml"} {
		if _, err := os.Lstat(f); err == nil {
			os.Remove(f)
			t.Errorf("the lab's storage pool definition reached this machine's %s", f)
		}
	}
	if _, err := os.Stat("/sys/class/net/pwvself0"); err == nil {
		t.Fatal("the lab's bridge pwvself0 is in this machine's network namespace")
	}
	if out, err := l.Run(ctx, "ip", "-o", "link", "show", "pwvself0"); err != nil || !strings.Contains(out, "pwvself0") {
		t.Fatalf("the bridge is not in the lab: %q %v", out, err)
	}
	nsPIDs := func() []string {
		var in []string
		want, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", l.PID))
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && ns == want {
				in = append(in, e.Name())
			}
		}
		return in
	}
	// PID 1, virtlogd, libvirtd and the network's dnsmasq (two processes).
	if n := len(nsPIDs()); n < 4 {
		t.Fatalf("%d processes in the lab's PID namespace, want at least 4", n)
	}
	pid1 := l.PID
	l.Stop()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid1)); err == nil {
		t.Fatal("the lab's PID 1 survived Stop")
	}
}

// TestBootPartialReady is the golden image's proof under libvirt: a VM on
// an isolated libvirt network with DHCP (a reservation for its MAC, option
// 121 to the IMDS) boots, its agent reaches the lab's prewarm-imds and
// reports partial-ready for the placeholder published before boot. It logs
// the cold boot time (domain start → partial-ready report).
func TestBootPartialReady(t *testing.T) {
	Require(t)
	im := RequireImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := Start(t, Options{IMDS: imdsBinary(t)})
	imds := client.NewUnix(l.IMDSSocket)

	net := filepath.Join(l.Dir, "pool-net.xml")
	os.WriteFile(net, []byte(`<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>pwv-pool</name>
  <bridge name='pwvpool0' stp='off' delay='0'/>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.128' end='10.77.0.250'/>
      <host mac='52:54:00:77:00:10' ip='10.77.0.10'/>
    </dhcp>
  </ip>
  <dnsmasq:options>
    <dnsmasq:option value='dhcp-option=121,169.254.169.254/32,10.77.0.1'/>
    <dnsmasq:option value='no-ping'/>
  </dnsmasq:options>
</network>`), 0o644)
	if _, err := l.Virsh(ctx, "net-define", net); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Virsh(ctx, "net-start", "pwv-pool"); err != nil {
		t.Fatal(err)
	}

	const id = "pwv-vm-1"
	if _, err := imds.Register(ctx, id, api.Registration{Addresses: []string{"10.77.0.10"}}); err != nil {
		t.Fatalf("register: %v", err)
	}
	gen, err := imds.Publish(ctx, id, []byte(`{"partial": true, "hostname": "warm-1"}`))
	if err != nil {
		t.Fatalf("publish the placeholder: %v", err)
	}

	overlay := filepath.Join(l.Dir, id+".qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", im.Disk, overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	console := l.LogPath("qemu/" + id + "-console.log")
	dom := filepath.Join(l.Dir, id+".xml")
	os.WriteFile(dom, []byte(fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='pwv-pool'/>
      <mac address='52:54:00:77:00:10'/>
      <model type='virtio'/>
      <target dev='pwvt1'/>
      <rom enabled='no'/>
    </interface>
    <serial type='pty'><log file='%s' append='off'/></serial>
    <console type='pty'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>`, id, im.Kernel, im.Initrd, im.Cmdline+os.Getenv("PREWARM_VIRTLAB_CMDLINE"), overlay, console)), 0o644)
	if _, err := l.Virsh(ctx, "define", dom); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := l.Virsh(ctx, "start", id); err != nil {
		t.Fatal(err)
	}
	t.Logf("domain started in %v", time.Since(start).Round(time.Millisecond))

	var after uint64
	for {
		h, err := imds.Status(ctx, id, after, true, 60*time.Second)
		if errors.Is(err, client.ErrNotModified) && ctx.Err() == nil {
			t.Logf("no report yet (+%v)", time.Since(start).Round(time.Millisecond))
			continue
		}
		if err != nil {
			b, _ := os.ReadFile(console)
			q, _ := os.ReadFile(l.LogPath("qemu/" + id + ".log"))
			t.Fatalf("status: %v\n---- console ----\n%s\n---- qemu log ----\n%s", err, b, q)
		}
		for _, r := range h.Reports {
			after = max(after, r.Seq)
			t.Logf("report seq=%d gen=%d state=%s event=%s error=%s (+%v)", r.Seq, r.Generation, r.State, r.Event, r.Error,
				time.Since(start).Round(time.Millisecond))
			if r.State == "failed" {
				t.Fatalf("the agent reported failed: %s", r.Error)
			}
			if r.State == "partial-ready" && r.Generation == gen {
				t.Logf("cold boot → partial-ready: %v", time.Since(start).Round(time.Millisecond))
				provision(ctx, t, l, imds, id, "10.77.0.10", after)
				return
			}
		}
		if ctx.Err() != nil {
			b, _ := os.ReadFile(console)
			t.Fatalf("no partial-ready before the deadline\n---- console ----\n%s", b)
		}
	}
}

// provision publishes a final document with a user holding a fresh SSH key,
// awaits provisioned, logs in over SSH from the lab and logs where the
// guest's boot went (systemd-analyze).
func provision(ctx context.Context, t *testing.T, l *Lab, imds *client.Client, id, ip string, after uint64) {
	key := filepath.Join(l.Dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	doc := fmt.Sprintf(`{"hostname": "final-1", "users": [{"name": "p2", "sshAuthorizedKeys": [%q]}]}`, strings.TrimSpace(string(pub)))
	gen, err := imds.Publish(ctx, id, []byte(doc))
	if err != nil {
		t.Fatalf("publish the final document: %v", err)
	}
	for done := false; !done; {
		h, err := imds.Status(ctx, id, after, true, 60*time.Second)
		if errors.Is(err, client.ErrNotModified) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		for _, r := range h.Reports {
			after = max(after, r.Seq)
			if r.State == "failed" {
				t.Fatalf("the agent reported failed: %s", r.Error)
			}
			done = done || r.State == "provisioned" && r.Generation == gen
		}
	}
	out, err := l.Run(ctx, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "p2@"+ip,
		"hostname; systemd-analyze; systemd-analyze blame | head -n 12")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "final-1\n") {
		t.Errorf("the guest's host name is not the final document's final-1:\n%s", out)
	}
	t.Logf("inside the guest (user p2, by the document's key):\n%s", out)
}
