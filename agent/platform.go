package agent

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/prewarm/prewarm/shared/config"
)

// The agent decides, the platform does: these small interfaces are all an
// operating system must provide. linux/ and windows/ implement them; only
// cmd/prewarm-agent wires an implementation in. Debounce, retry, ordering and
// the decision of what to apply live in this package, once.

// LinkEventKind says what happened to a link.
type LinkEventKind int

const (
	// CarrierLost: the interface lost its carrier (or went down).
	CarrierLost LinkEventKind = iota + 1
	// CarrierBack: the carrier came back, or the carrier-change counter rose
	// while the carrier is up (a bounce shorter than the kernel's
	// link-event rate limit arrives as one message with the counter up by 2).
	CarrierBack
	// LinkAdded: a managed interface appeared.
	LinkAdded
	// LinkRemoved: a managed interface disappeared.
	LinkRemoved
)

func (k LinkEventKind) String() string {
	switch k {
	case CarrierLost:
		return "carrier-lost"
	case CarrierBack:
		return "carrier-back"
	case LinkAdded:
		return "added"
	case LinkRemoved:
		return "removed"
	}
	return "unknown"
}

// LinkEvent is one change of a managed interface.
type LinkEvent struct {
	Kind      LinkEventKind
	Interface string // kernel name, e.g. "eth0"
	Index     int
	MAC       string // lower case, colon separated
	// CarrierChanges is the interface's carrier-change counter after the
	// event, where the OS has one (Linux IFLA_CARRIER_CHANGES), else 0.
	CarrierChanges uint32
	Time           time.Time
	// Handled, when set, is called by the agent once it holds the event
	// (an outcome decided after the call waits for what the event
	// starts). A LinkSettler counts the event as still to come until
	// then, so no outcome slips between the watcher's hand-over and the
	// agent's. Calling it more than once is harmless.
	Handled func()
}

// LinkWatcher reports carrier changes of the interfaces the agent manages.
type LinkWatcher interface {
	// WatchLinks subscribes to link changes and returns at once, with the
	// subscription already open (so a flap right after it is not missed).
	// Events arrive on the channel until ctx is done; the channel is then
	// closed. The watcher never blocks on a slow reader for long: it may
	// coalesce or drop events for an interface, never the last one.
	WatchLinks(ctx context.Context) (<-chan LinkEvent, error)
}

// LinkSettler is optionally implemented by a LinkWatcher whose OS changes a
// link's state before it notifies it (Linux rate-limits link notices to
// about one a second; the carrier flag and its change counter change at
// once). The agent asks it before it reports a generation's outcome, so a
// claim's NIC bounce that began before the outcome is renewed first.
type LinkSettler interface {
	// LinksBehind reports whether a managed link has changed in a way no
	// event has told the agent of yet (an event is still to come).
	LinksBehind(ctx context.Context) (bool, error)
}

// Lease is what a DHCP renewal produced.
type Lease struct {
	Interface string
	Addresses []netip.Prefix
	// Client names the DHCP client that renewed ("dhclient", "dhcpcd",
	// "udhcpc", "networkd", "networkmanager", "builtin", "windows"); a
	// failed renewal names it too where it was known.
	Client string
	// Previous are the addresses the interface held before the renewal,
	// where the platform read them.
	Previous []netip.Prefix
}

// DHCPRenewer renews DHCP leases.
type DHCPRenewer interface {
	// DHCPInterfaces lists the interfaces whose addresses DHCP manages.
	DHCPInterfaces(ctx context.Context) ([]string, error)
	// RenewDHCP renews the lease of iface through whichever client owns it
	// and returns the addresses the interface holds afterwards.
	RenewDHCP(ctx context.Context, iface string) (Lease, error)
}

// DHCPClientNamer is optionally implemented by a DHCPRenewer that can tell,
// before a renewal, which client will renew an interface (the name Lease's
// Client takes), so the renewal's start is reported with it.
type DHCPClientNamer interface {
	DHCPClient(ctx context.Context, iface string) (string, error)
}

// StepResult is what an apply step did.
type StepResult struct {
	// Changed is false when the machine already matched the document.
	Changed bool
	// RebootRequired is true when the change takes full effect only after
	// a restart.
	RebootRequired bool
	// Actions describes each change made, for the log ("set /etc/hostname").
	Actions []string
}

// HostnameSetter applies the hostname step.
type HostnameSetter interface {
	ApplyHostname(ctx context.Context, hostname string) (StepResult, error)
}

// TimezoneSetter applies the timezone step.
type TimezoneSetter interface {
	ApplyTimezone(ctx context.Context, zone string) (StepResult, error)
}

// UserManager applies the users step: it ensures every listed user exists
// with the given groups, sudo level, shell, password and SSH keys. Users not
// listed are left alone; of a user's authorized keys, only those the agent
// wrote before are replaced.
type UserManager interface {
	ApplyUsers(ctx context.Context, users []config.User) (StepResult, error)
}

// NetworkConfigurator applies the static part of the network section:
// addresses, gateway, routes, MTU and DNS of the interfaces it names.
type NetworkConfigurator interface {
	ApplyNetwork(ctx context.Context, network *config.Network) (StepResult, error)
}

// Platform bundles what one operating system provides.
type Platform struct {
	Links    LinkWatcher
	DHCP     DHCPRenewer
	Hostname HostnameSetter
	Timezone TimezoneSetter
	Users    UserManager
	Network  NetworkConfigurator
	// HostKeys is optional (hostkeys.go): without it reports carry no
	// SSH host keys and sshHostKeys.regenerate fails.
	HostKeys HostKeyManager
}

// ErrNotImplemented is returned by a platform step this OS does not support.
var ErrNotImplemented = errors.New("not implemented on this OS")
