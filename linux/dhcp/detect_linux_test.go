package dhcp

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeProc builds a /proc with the given processes (comm, argv), all in one
// network namespace.
func fakeProc(t *testing.T, procs ...[]string) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "self/ns"), 0o755)
	os.Symlink("net:[4026531999]", filepath.Join(dir, "self/ns/net"))
	for i, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(100+i))
		os.MkdirAll(filepath.Join(d, "ns"), 0o755)
		os.WriteFile(filepath.Join(d, "comm"), []byte(p[0]+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.Join(p[1:], "\x00")+"\x00"), 0o644)
		os.WriteFile(filepath.Join(d, "stat"), []byte(strconv.Itoa(100+i)+" ("+p[0]+") S 1 1"), 0o644)
		ns := "net:[4026531999]"
		if p[0] == "other-ns" {
			ns = "net:[4026532000]"
		}
		if strings.HasPrefix(p[1], "unreadable-ns:") {
			// As if /proc/PID/ns/net were denied to us.
			os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.Join(append([]string{strings.TrimPrefix(p[1], "unreadable-ns:")}, p[2:]...), "\x00")+"\x00"), 0o644)
			continue
		}
		os.Symlink(ns, filepath.Join(d, "ns/net"))
	}
	return dir
}

func TestDetect(t *testing.T) {
	run := t.TempDir()
	os.MkdirAll(filepath.Join(run, "systemd/netif/links"), 0o755)
	os.WriteFile(filepath.Join(run, "systemd/netif/links/2"), []byte("ADMIN_STATE=configured\nNETWORK_FILE=/etc/systemd/network/eth.network\n"), 0o644)
	tests := []struct {
		name  string
		procs [][]string
		want  string
	}{
		{"nothing", nil, Builtin},
		{"dhclient", [][]string{{"dhclient", "/sbin/dhclient", "-4", "-v", "-pf", "/run/dhclient.eth0.pid", "eth0"}}, Dhclient},
		{"dhclient on another nic", [][]string{{"dhclient", "dhclient", "eth1"}}, Builtin},
		{"dhcpcd title", [][]string{{"dhcpcd", "dhcpcd: eth0 [ip4]"}}, Dhcpcd},
		{"dhcpcd manager", [][]string{{"dhcpcd", "dhcpcd: [manager] [ip4] [ip6]"}}, Dhcpcd},
		{"dhcpcd manager argv", [][]string{{"dhcpcd", "/usr/sbin/dhcpcd", "-q", "-f", "/etc/dhcpcd.conf"}}, Dhcpcd},
		{"udhcpc busybox", [][]string{{"busybox", "busybox", "udhcpc", "-i", "eth0", "-f"}}, Udhcpc},
		{"udhcpc applet", [][]string{{"udhcpc", "udhcpc", "-ieth0"}}, Udhcpc},
		{"busybox other applet", [][]string{{"busybox", "busybox", "sh", "-i", "eth0"}}, Builtin},
		{"networkd", [][]string{{"systemd-network", "/lib/systemd/systemd-networkd"}}, Networkd},
		{"networkmanager", [][]string{{"NetworkManager", "/usr/sbin/NetworkManager", "--no-daemon"}}, NetworkManager},
		{"client beats manager", [][]string{{"NetworkManager", "NetworkManager"}, {"dhclient", "dhclient", "eth0"}}, Dhclient},
		{"other namespace ignored", [][]string{{"other-ns", "dhclient", "eth0"}}, Builtin},
		{"unreadable namespace kept", [][]string{{"dhclient", "unreadable-ns:dhclient", "eth0"}}, Dhclient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := detect(fakeProc(t, tc.procs...), run, "eth0", 2); got.Client != tc.want {
				t.Fatalf("detect = %+v, want %s", got, tc.want)
			}
		})
	}
}

func TestOverride(t *testing.T) {
	if _, err := New(Options{Client: "pump"}); !errors.Is(err, ErrUnknownClient) {
		t.Fatalf("err %v", err)
	}
	r, err := New(Options{Client: Builtin, ProcDir: fakeProc(t, []string{"dhclient", "dhclient", "eth0"})})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.owner("eth0", 2); got.Client != Builtin {
		t.Fatalf("override ignored: %+v", got)
	}
	r, _ = New(Options{Client: Dhclient, ProcDir: fakeProc(t, []string{"dhclient", "dhclient", "eth0"})})
	if got := r.owner("eth0", 2); got.Client != Dhclient || got.PID == 0 {
		t.Fatalf("a running client of the overriding kind must be found: %+v", got)
	}
}

func TestDhcpcdControlArgs(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"dhcpcd: eth0 [ip4]"}, "-n -4 eth0"},
		{[]string{"dhcpcd: [manager] [ip4] [ip6]"}, "-n eth0"},
		{[]string{"/sbin/dhcpcd", "-6", "-f", "/etc/d.conf", "eth0"}, "-n -6 -f /etc/d.conf eth0"},
		{nil, "-n eth0"},
	}
	for _, tc := range tests {
		if got := strings.Join(dhcpcdControlArgs(tc.argv, "-n", "eth0"), " "); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.argv, got, tc.want)
		}
	}
}
