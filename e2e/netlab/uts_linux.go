package netlab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// StartGuestUTS is StartGuest in a UTS namespace of the guest's own
// (`unshare --uts`, for the whole test binary, every thread), so the guest
// may set its host name with SetHostname and its DHCP clients send it,
// while the machine's stays as it is.
func (p *Pair) StartGuestUTS(t testing.TB, name string, env ...string) *Guest {
	t.Helper()
	Require(t, "unshare")
	host, err := os.Readlink("/proc/self/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
	return p.Guest.startTest(t, []string{"unshare", "--uts", "--"}, name,
		append([]string{hostUTSEnv + "=" + host, "PWL_DIR=" + p.Dir, "PWL_IF=" + p.GuestIf, "PWL_MAC=" + p.GuestMAC}, env...)...)
}

// hostUTSEnv tells a guest started by StartGuestUTS the UTS namespace of
// the test that started it: the machine's, which SetHostname never renames.
const hostUTSEnv = "NETLAB_HOST_UTS"

// SetHostname sets the host name of this process's UTS namespace. It
// refuses anywhere but in a guest started by StartGuestUTS: in the UTS
// namespace of the test that started it, or of PID 1 (when readable).
func SetHostname(name string) error {
	self, err := os.Readlink("/proc/self/ns/uts")
	if err != nil {
		return fmt.Errorf("netlab.SetHostname: %w", err)
	}
	init, _ := os.Readlink("/proc/1/ns/uts")
	if host := os.Getenv(hostUTSEnv); host == "" || self == host || self == init {
		return fmt.Errorf("netlab.SetHostname %q: not in a UTS namespace of its own (StartGuestUTS); refusing to rename the machine", name)
	}
	return unix.Sethostname([]byte(name))
}

// Lease is one line of dnsmasq's lease file: expiry, MAC, address, host
// name ("*" when the client sent none), client ID.
type Lease struct{ MAC, Addr, Name string }

// Leases reads the lease file.
func (d *Dnsmasq) Leases() ([]Lease, error) {
	b, err := os.ReadFile(d.LeaseFile)
	if err != nil {
		return nil, err
	}
	var out []Lease
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 4 {
			out = append(out, Lease{MAC: f[1], Addr: f[2], Name: f[3]})
		}
	}
	return out, nil
}

// WaitLease waits (bounded by ctx) until the lease file holds a lease of
// mac with host name name, and returns it; on timeout the error shows the
// leases of mac seen last. dnsmasq writes the file just after its ACK.
func (d *Dnsmasq) WaitLease(ctx context.Context, mac, name string) (Lease, error) {
	var last []Lease
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ls, err := d.Leases()
		if err == nil {
			last = last[:0]
			for _, l := range ls {
				if strings.EqualFold(l.MAC, mac) {
					if l.Name == name {
						return l, nil
					}
					last = append(last, l)
				}
			}
		}
		select {
		case <-ctx.Done():
			return Lease{}, fmt.Errorf("no lease of %s named %q in %s (its leases: %v): %w", mac, name, d.LeaseFile, last, ctx.Err())
		case <-time.After(delay):
		}
	}
}
