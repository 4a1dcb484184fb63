package dhcp

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Client names, as in agent.Lease.Client.
const (
	Dhclient       = "dhclient"
	Dhcpcd         = "dhcpcd"
	Udhcpc         = "udhcpc"
	Networkd       = "networkd"
	NetworkManager = "networkmanager"
	Builtin        = "builtin"
)

// owner is the client that owns an interface.
type owner struct {
	Client string
	PID    int      // of a running dhclient, dhcpcd or udhcpc
	Argv   []string // its command line
}

type proc struct {
	pid  int
	comm string
	argv []string
}

// listProcs lists the live processes of the caller's network namespace: a
// client in another namespace (a container, another test) owns nothing here.
func listProcs(procDir string) []proc {
	self, _ := os.Readlink(filepath.Join(procDir, "self/ns/net"))
	ents, _ := os.ReadDir(procDir)
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(procDir, e.Name(), "comm"))
		if err != nil {
			continue
		}
		if exited(procDir, pid) {
			continue
		}
		// A client in another network namespace does not own our
		// interfaces. One whose namespace we may not read (a root daemon,
		// seen from an agent with a reduced capability set) is kept: its
		// command line still names the interface it serves, and skipping
		// it would start the built-in client beside it.
		if ns, err := os.Readlink(filepath.Join(procDir, e.Name(), "ns/net")); err == nil && self != "" && ns != self {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join(procDir, e.Name(), "cmdline"))
		argv := strings.Split(string(bytes.TrimRight(cl, "\x00")), "\x00")
		out = append(out, proc{pid: pid, comm: strings.TrimSpace(string(comm)), argv: argv})
	}
	slices.SortFunc(out, func(a, b proc) int { return a.pid - b.pid })
	return out
}

// exited reports whether pid is gone or a zombie.
func exited(procDir string, pid int) bool {
	st, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || st[i+2] == 'Z' || st[i+2] == 'X'
}

// words splits argv into words, also inside arguments: dhcpcd rewrites its
// process title to one string ("dhcpcd: eth0 [ip4]").
func words(argv []string) []string {
	var out []string
	for _, a := range argv {
		out = append(out, strings.Fields(a)...)
	}
	return out
}

// mentions reports whether a command line names iface as an interface.
func mentions(argv []string, iface string) bool {
	w := words(argv)
	for i, a := range w {
		switch {
		case a == iface, a == "-i"+iface, a == "--interface="+iface:
			return true
		case (a == "-i" || a == "--interface") && i+1 < len(w) && w[i+1] == iface:
			return true
		}
	}
	return false
}

func isUdhcpc(p proc) bool {
	if p.comm == "udhcpc" {
		return true
	}
	if len(p.argv) > 1 && (p.comm == "busybox" || filepath.Base(p.argv[0]) == "busybox") {
		return p.argv[1] == "udhcpc"
	}
	return false
}

// detect finds the client owning iface (index ifindex). Running
// per-interface clients win over managers; with none, the built-in client.
func detect(procDir, runDir string, iface string, ifindex int) owner {
	procs := listProcs(procDir)
	var dhcpcdManager *proc
	var networkd, nm bool
	for i, p := range procs {
		switch {
		case p.comm == "dhclient":
			if mentions(p.argv[1:], iface) {
				return owner{Client: Dhclient, PID: p.pid, Argv: p.argv}
			}
		case p.comm == "dhcpcd":
			if mentions(p.argv, iface) {
				return owner{Client: Dhcpcd, PID: p.pid, Argv: p.argv}
			}
			if dhcpcdManager == nil && managerMode(p.argv) {
				dhcpcdManager = &procs[i]
			}
		case isUdhcpc(p):
			if mentions(p.argv[1:], iface) {
				return owner{Client: Udhcpc, PID: p.pid, Argv: p.argv}
			}
		case p.comm == "systemd-network" || p.comm == "systemd-networkd":
			networkd = true
		case p.comm == "NetworkManager":
			nm = true
		}
	}
	if dhcpcdManager != nil {
		return owner{Client: Dhcpcd, PID: dhcpcdManager.pid, Argv: dhcpcdManager.argv}
	}
	if networkd {
		st, err := os.ReadFile(filepath.Join(runDir, "systemd/netif/links", strconv.Itoa(ifindex)))
		if err == nil && bytes.Contains(st, []byte("NETWORK_FILE=")) {
			return owner{Client: Networkd}
		}
	}
	if nm {
		return owner{Client: NetworkManager}
	}
	return owner{Client: Builtin}
}

// managerMode reports whether a dhcpcd serves every interface (started
// without naming one).
func managerMode(argv []string) bool {
	w := words(argv)[1:]
	if slices.Contains(w, "[manager]") || slices.Contains(w, "[master]") {
		return true
	}
	for i := 0; i < len(w); i++ {
		a := w[i]
		if !strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "[") {
			prev := ""
			if i > 0 {
				prev = w[i-1]
			}
			// an option's value, not an interface
			if !slices.Contains([]string{"-f", "--config", "-c", "--script", "-h", "-t", "-e", "-o", "-O"}, prev) {
				return false
			}
		}
	}
	return true
}
