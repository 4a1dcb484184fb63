// Package config is prewarm-pool's configuration file: the libvirt and IMDS
// sockets, the networks the controller ensures, and the flavors it keeps
// warm. The file is JSON or YAML (sigs.k8s.io/yaml turns YAML into JSON);
// unknown fields are errors, and Validate names every offending field by
// its path, the way the IMDS names a document's (docs/pool.md).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/prewarm/prewarm/shared/config"
)

// Defaults of the optional fields.
const (
	DefaultLibvirtSocket = "/run/libvirt/libvirt-sock"
	DefaultIMDSAdmin     = "/run/prewarm/imds-admin.sock"
	DefaultSocket        = "/run/prewarm/pool.sock"
	DefaultDomainType    = "qemu"
	DefaultStoragePool   = "prewarm"
	DefaultOverlayDir    = "/var/lib/prewarm-pool/overlays"
	DefaultConsoleLogDir = "/var/log/prewarm-pool"
	DefaultMaxBoots      = 2
	DefaultBootTimeout   = 5 * time.Minute
	DefaultClaimTimeout  = time.Minute
	DefaultMachine       = "q35"
)

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration struct{ time.Duration }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "30s" or "5m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`must be a duration string such as "30s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`must be a duration string such as "30s": %q`, s)
	}
	d.Duration = v
	return nil
}

// Config is the whole file.
type Config struct {
	Libvirt       string   `json:"libvirt,omitempty"`
	IMDSAdmin     string   `json:"imdsAdmin,omitempty"`
	Socket        string   `json:"socket,omitempty"`
	DomainType    string   `json:"domainType,omitempty"`
	StoragePool   string   `json:"storagePool,omitempty"`
	OverlayDir    string   `json:"overlayDir,omitempty"`
	ConsoleLogDir string   `json:"consoleLogDir,omitempty"`
	MaxBoots      int      `json:"maxBoots,omitempty"`
	BootTimeout   Duration `json:"bootTimeout,omitzero"`
	ClaimTimeout  Duration `json:"claimTimeout,omitzero"`
	// PauseBootsDuringClaims suspends refill boots while a warm claim
	// runs, so the claimed VM's agent has the CPU (TCG hosts).
	PauseBootsDuringClaims bool      `json:"pauseBootsDuringClaims,omitempty"`
	Networks               []Network `json:"networks"`
	Flavors                []Flavor  `json:"flavors"`
}

// Network is one libvirt network the controller ensures: an isolated
// bridge with the CIDR's first host as its gateway and DHCP reservations
// the controller adds per VM.
type Network struct {
	Name   string `json:"name"`
	Bridge string `json:"bridge"`
	CIDR   string `json:"cidr"`
}

// Flavor is one combination type the pool keeps warm.
type Flavor struct {
	Name          string `json:"name"`
	VCPUs         int    `json:"vcpus"`
	MemoryMiB     int    `json:"memoryMiB"`
	PoolNetwork   string `json:"poolNetwork"`
	TenantNetwork string `json:"tenantNetwork,omitempty"`
	Warm          int    `json:"warm"`
	Machine       string `json:"machine,omitempty"`
	Image         Image  `json:"image"`
	// Placeholder holds extra fields of the partial document (hostname,
	// timezone...); "partial": true is always set by the controller.
	Placeholder json.RawMessage `json:"placeholder,omitempty"`
}

// Image is the golden image of a flavor, booted directly from its kernel.
type Image struct {
	Disk    string `json:"disk"`
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// FieldError and ValidationError are the contract's (a path and a rule).
type (
	FieldError      = config.FieldError
	ValidationError = config.ValidationError
)

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a JSON or YAML file strictly (unknown fields are errors),
// fills in defaults and validates it.
func Parse(data []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not JSON or YAML: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(err)
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decodeError turns encoding/json's errors into a field error where it can.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &ValidationError{Fields: []FieldError{{Path: te.Field, Reason: "must be a " + te.Type.String()}}}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return &ValidationError{Fields: []FieldError{{Path: strings.Trim(f, `"`), Reason: "unknown field"}}}
	}
	return fmt.Errorf("decode: %w", err)
}

func (c *Config) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Libvirt, DefaultLibvirtSocket)
	def(&c.IMDSAdmin, DefaultIMDSAdmin)
	def(&c.Socket, DefaultSocket)
	def(&c.DomainType, DefaultDomainType)
	def(&c.StoragePool, DefaultStoragePool)
	def(&c.OverlayDir, DefaultOverlayDir)
	def(&c.ConsoleLogDir, DefaultConsoleLogDir)
	if c.MaxBoots == 0 {
		c.MaxBoots = DefaultMaxBoots
	}
	if c.BootTimeout.Duration == 0 {
		c.BootTimeout.Duration = DefaultBootTimeout
	}
	if c.ClaimTimeout.Duration == 0 {
		c.ClaimTimeout.Duration = DefaultClaimTimeout
	}
	for i := range c.Flavors {
		def(&c.Flavors[i].Machine, DefaultMachine)
	}
}

var (
	nameRule   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	bridgeRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
)

// Validate checks every field and returns a *ValidationError naming each
// offending one.
func (c *Config) Validate() error {
	var errs []FieldError
	fail := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
	}
	abs := func(path, v string) {
		if !strings.HasPrefix(v, "/") {
			fail(path, "must be an absolute path")
		}
	}
	abs("libvirt", c.Libvirt)
	abs("imdsAdmin", c.IMDSAdmin)
	abs("socket", c.Socket)
	abs("overlayDir", c.OverlayDir)
	abs("consoleLogDir", c.ConsoleLogDir)
	if c.DomainType != "qemu" && c.DomainType != "kvm" {
		fail("domainType", `must be "qemu" (TCG) or "kvm"`)
	}
	if !nameRule.MatchString(c.StoragePool) {
		fail("storagePool", "must match %s", nameRule)
	}
	if c.MaxBoots < 1 || c.MaxBoots > 64 {
		fail("maxBoots", "must be between 1 and 64")
	}
	if c.BootTimeout.Duration < time.Second {
		fail("bootTimeout", "must be at least 1s")
	}
	if c.ClaimTimeout.Duration < time.Second {
		fail("claimTimeout", "must be at least 1s")
	}
	nets := map[string]netip.Prefix{}
	bridges := map[string]bool{}
	if len(c.Networks) == 0 {
		fail("networks", "required: at least the pool network")
	}
	for i, n := range c.Networks {
		p := "networks[" + strconv.Itoa(i) + "]"
		if !nameRule.MatchString(n.Name) {
			fail(p+".name", "must match %s", nameRule)
		} else if _, dup := nets[n.Name]; dup {
			fail(p+".name", "duplicate network %q", n.Name)
		}
		if !bridgeRule.MatchString(n.Bridge) {
			fail(p+".bridge", "must be a Linux device name of at most 15 characters")
		} else if strings.HasPrefix(n.Bridge, "vnet") || strings.HasPrefix(n.Bridge, "virbr") {
			fail(p+".bridge", "must not start with vnet or virbr (libvirt's own prefixes)")
		} else if bridges[n.Bridge] {
			fail(p+".bridge", "duplicate bridge %q", n.Bridge)
		}
		bridges[n.Bridge] = true
		pre, err := netip.ParsePrefix(n.CIDR)
		switch {
		case err != nil || !pre.Addr().Is4():
			fail(p+".cidr", "must be an IPv4 network in CIDR notation, e.g. 10.254.0.0/24")
			continue
		case pre.Masked() != pre:
			fail(p+".cidr", "must have its host bits zero (%s)", pre.Masked())
			continue
		case pre.Bits() > 29 || pre.Bits() < 16:
			fail(p+".cidr", "prefix length must be between /16 and /29")
			continue
		case pre.Overlaps(netip.MustParsePrefix("169.254.0.0/16")):
			fail(p+".cidr", "must not overlap 169.254.0.0/16 (the metadata address)")
			continue
		}
		for name, o := range nets {
			if o.IsValid() && o.Overlaps(pre) {
				fail(p+".cidr", "overlaps network %q (%s): guests are told apart by address, so networks of one host must not overlap", name, o)
			}
		}
		if nameRule.MatchString(n.Name) {
			nets[n.Name] = pre
		}
	}
	if len(c.Flavors) == 0 {
		fail("flavors", "required: at least one flavor")
	}
	flavors := map[string]bool{}
	for i, f := range c.Flavors {
		p := "flavors[" + strconv.Itoa(i) + "]"
		if !nameRule.MatchString(f.Name) || len(f.Name) > 20 {
			fail(p+".name", "must match ^[a-z0-9][a-z0-9-]{0,19}$")
		} else if flavors[f.Name] {
			fail(p+".name", "duplicate flavor %q", f.Name)
		}
		flavors[f.Name] = true
		if f.VCPUs < 1 || f.VCPUs > 64 {
			fail(p+".vcpus", "must be between 1 and 64")
		}
		if f.MemoryMiB < 64 || f.MemoryMiB > 1<<20 {
			fail(p+".memoryMiB", "must be between 64 and 1048576")
		}
		if f.Warm < 0 || f.Warm > 256 {
			fail(p+".warm", "must be between 0 and 256")
		}
		if _, ok := nets[f.PoolNetwork]; !ok {
			fail(p+".poolNetwork", "must name one of networks[].name")
		}
		if f.TenantNetwork != "" {
			if _, ok := nets[f.TenantNetwork]; !ok {
				fail(p+".tenantNetwork", "must name one of networks[].name")
			} else if f.TenantNetwork == f.PoolNetwork {
				fail(p+".tenantNetwork", "must not be the pool network")
			}
		}
		if f.Machine != "" && !regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`).MatchString(f.Machine) {
			fail(p+".machine", "must be a QEMU machine type such as q35 or pc")
		}
		for _, img := range []struct{ field, path string }{
			{"disk", f.Image.Disk}, {"kernel", f.Image.Kernel}, {"initrd", f.Image.Initrd},
		} {
			fp := p + ".image." + img.field
			if img.path == "" {
				if img.field != "initrd" {
					fail(fp, "required")
				}
				continue
			}
			if !strings.HasPrefix(img.path, "/") {
				fail(fp, "must be an absolute path")
				continue
			}
			if st, err := os.Stat(img.path); err != nil {
				fail(fp, "image file missing: %v", err)
			} else if !st.Mode().IsRegular() {
				fail(fp, "must be a regular file")
			}
		}
		if len(f.Placeholder) > 0 {
			var m map[string]any
			if err := json.Unmarshal(f.Placeholder, &m); err != nil {
				fail(p+".placeholder", "must be a JSON object")
			} else if _, err := PlaceholderDocument(f.Placeholder); err != nil {
				var ve *ValidationError
				if errors.As(err, &ve) {
					for _, fe := range ve.Fields {
						fail(p+".placeholder."+fe.Path, "%s", fe.Reason)
					}
				} else {
					fail(p+".placeholder", "%v", err)
				}
			}
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Fields: errs}
	}
	return nil
}

// PlaceholderDocument returns the partial document of a flavor: extra
// (a JSON object, may be empty) with "partial": true, validated by the
// contract's rules.
func PlaceholderDocument(extra json.RawMessage) ([]byte, error) {
	m := map[string]any{}
	if len(extra) > 0 {
		if err := json.Unmarshal(extra, &m); err != nil {
			return nil, fmt.Errorf("placeholder: %w", err)
		}
	}
	m["partial"] = true
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	d, err := config.Decode(b)
	if err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// Flavor returns the flavor called name.
func (c *Config) Flavor(name string) (*Flavor, bool) {
	for i := range c.Flavors {
		if c.Flavors[i].Name == name {
			return &c.Flavors[i], true
		}
	}
	return nil, false
}

// Network returns the network called name.
func (c *Config) Network(name string) (*Network, bool) {
	for i := range c.Networks {
		if c.Networks[i].Name == name {
			return &c.Networks[i], true
		}
	}
	return nil, false
}

// Prefix returns the network's CIDR (valid after Validate).
func (n *Network) Prefix() netip.Prefix { return netip.MustParsePrefix(n.CIDR) }

// Gateway returns the network's first host address, the bridge's address.
func (n *Network) Gateway() netip.Addr { return n.Prefix().Addr().Next() }
