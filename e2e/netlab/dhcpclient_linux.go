package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The DHCP clients a guest may run.
const (
	Dhclient = "dhclient" // ISC dhclient
	Dhcpcd   = "dhcpcd"
	Udhcpc   = "udhcpc" // busybox udhcpc
)

// DHCPClient is how a guest runs one DHCP client on one interface, with
// private files only: its hook, lease, PID and config files are under Dir,
// so no client writes the machine's resolv.conf, host name or leases.
type DHCPClient struct {
	Kind  string // Dhclient, Dhcpcd or Udhcpc
	Iface string
	// Dir is where the client finds its files, as the client sees it.
	Dir string
	// WriteDir is where this process writes them, when the guest sees
	// them elsewhere (a private mount); "" means Dir.
	WriteDir string
	// Hostname makes the client send the host name, as a distribution's
	// default configuration does: dhclient reads a config of its own with
	// "send host-name = gethostname();" (otherwise the machine's
	// /etc/dhcp/dhclient.conf), dhcpcd's config has "hostname". udhcpc
	// has no config to read it from: its command line names it (-x
	// hostname:NAME), and Argv may run in another UTS namespace than
	// the client, so it adds none.
	Hostname bool
	// Background (udhcpc only) starts udhcpc as ifupdown does: without
	// -f, with a PID file (PIDFile); it forks into the background once
	// bound, so the command returns then.
	Background bool
}

// LeaseLine is the start of the line the udhcpc hook prints on every lease:
// "netlab: lease <iface> <addr>".
const LeaseLine = "netlab: lease "

// Tool is the executable the client needs (busybox for udhcpc).
func (c DHCPClient) Tool() string {
	if c.Kind == Udhcpc {
		return "busybox"
	}
	return c.Kind
}

// PIDFile is dhclient's PID file (and a Background udhcpc's), as the
// client sees it.
func (c DHCPClient) PIDFile() string {
	return filepath.Join(c.Dir, c.Kind+"."+c.Iface+".pid")
}

// Argv writes the client's files and returns its command line.
//
// dhclient (-1) and dhcpcd (-w) return once they hold a lease and go on in
// the background; find them by PIDFile or by name. udhcpc stays in the
// foreground (-f): start it as a Proc and wait for LeaseLine.
//
// The hooks set the lease's address (dropping other dynamic addresses,
// never static ones) and the default route; dhcpcd configures the
// interface itself (no ARP probe, no start delay: 6.5 s a lease otherwise)
// and is the only one that installs option 121's routes.
func (c DHCPClient) Argv() ([]string, error) {
	if c.Iface == "" || c.Dir == "" {
		return nil, fmt.Errorf("netlab.DHCPClient: Iface and Dir are required (got %q, %q)", c.Iface, c.Dir)
	}
	wd := c.WriteDir
	if wd == "" {
		wd = c.Dir
	}
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return nil, err
	}
	// Each file is written beside its place and renamed over it: a
	// client started before (dhcpcd's daemon) may be running the hook
	// right now, and opening a running executable for writing fails
	// with ETXTBSY ("text file busy").
	file := func(name, data string, perm os.FileMode) (string, error) {
		dst := filepath.Join(wd, name)
		tmp := dst + ".new"
		if err := os.WriteFile(tmp, []byte(data), perm); err != nil {
			return "", err
		}
		return filepath.Join(c.Dir, name), os.Rename(tmp, dst)
	}
	base := c.Kind + "." + c.Iface
	switch c.Kind {
	case Dhclient:
		hook, err := file("hook-dhclient", dhclientHook, 0o755)
		if err != nil {
			return nil, err
		}
		argv := []string{"dhclient", "-4", "-1", "-sf", hook}
		if c.Hostname {
			conf, err := file(base+".conf", "send host-name = gethostname();\n", 0o644)
			if err != nil {
				return nil, err
			}
			argv = append(argv, "-cf", conf)
		}
		return append(argv, "-lf", filepath.Join(c.Dir, base+".leases"), "-pf", c.PIDFile(), c.Iface), nil
	case Dhcpcd:
		hook, err := file("hook-dhcpcd", "#!/bin/sh\nexit 0\n", 0o755)
		if err != nil {
			return nil, err
		}
		opts := "noarp\nnodelay\nnoipv4ll\nipv4only\noption subnet_mask, routers, classless_static_routes\nlogfile " + filepath.Join(c.Dir, base+".log") + "\n"
		if c.Hostname {
			opts += "hostname\n"
		}
		conf, err := file(base+".conf", opts, 0o644)
		if err != nil {
			return nil, err
		}
		return []string{"dhcpcd", "-4", "-w", "-t", "15", "-f", conf, "-c", hook, c.Iface}, nil
	case Udhcpc:
		hook, err := file("hook-udhcpc", udhcpcHook, 0o755)
		if err != nil {
			return nil, err
		}
		argv := []string{"busybox", "udhcpc", "-i", c.Iface, "-t", "5", "-T", "1", "-A", "1", "-s", hook}
		if c.Background {
			argv = append(argv, "-p", c.PIDFile())
		} else {
			argv = append(argv, "-f")
		}
		return argv, nil
	}
	return nil, fmt.Errorf("netlab.DHCPClient.Kind: %q is not one of %s, %s, %s", c.Kind, Dhclient, Dhcpcd, Udhcpc)
}

// dhclientHook is a minimal dhclient-script: it sets the lease's address
// (removing other dynamic addresses, never static ones) and the default
// route, and writes no resolv.conf and no host name.
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

// udhcpcHook is the same for busybox udhcpc, and prints LeaseLine.
const udhcpcHook = `#!/bin/sh
dyn() { ip -4 -o addr show dev "$interface" dynamic | awk '{print $4}'; }
case "$1" in
deconfig)
  for a in $(dyn); do ip -4 addr del "$a" dev "$interface"; done
  ip link set dev "$interface" up ;;
bound|renew)
  for a in $(dyn); do [ "$a" = "$ip/${mask:-24}" ] || ip -4 addr del "$a" dev "$interface"; done
  ip -4 addr replace "$ip/${mask:-24}" dev "$interface" valid_lft "${lease:-120}" preferred_lft "${lease:-120}"
  for r in $router; do ip -4 route replace default via "$r" dev "$interface"; break; done
  echo "netlab: lease $interface $ip" ;;
esac
exit 0
`

// StopDHCPClients sends SIGTERM to every DHCP client (dhclient, dhcpcd,
// busybox udhcpc) in this process's network namespace, which in a guest
// are the guest's own: the ones it started. It returns their PIDs.
func StopDHCPClients() []int {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil || ns != self {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		name := filepath.Base(argv[0])
		if name == "dhclient" || name == "dhcpcd" || (name == "busybox" && len(argv) > 1 && argv[1] == "udhcpc") || name == "udhcpc" {
			if syscall.Kill(pid, syscall.SIGTERM) == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
