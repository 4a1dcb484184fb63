package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func files(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"disk.qcow2", "vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseYAMLAndJSONWithDefaults(t *testing.T) {
	dir := files(t)
	y := `
networks:
  - {name: pool, bridge: pwpool0, cidr: 10.254.0.0/24}
  - {name: tenant-a, bridge: pwta0, cidr: 10.10.1.0/24}
flavors:
  - name: small
    vcpus: 1
    memoryMiB: 512
    poolNetwork: pool
    tenantNetwork: tenant-a
    warm: 2
    image: {disk: DIR/disk.qcow2, kernel: DIR/vmlinuz, initrd: DIR/initrd.img, cmdline: "console=ttyS0"}
    placeholder: {hostname: warm, timezone: UTC}
bootTimeout: 90s
`
	y = strings.ReplaceAll(y, "DIR", dir)
	c, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if c.Libvirt != DefaultLibvirtSocket || c.MaxBoots != DefaultMaxBoots || c.BootTimeout.Duration != 90*time.Second ||
		c.ClaimTimeout.Duration != DefaultClaimTimeout || c.Flavors[0].Machine != DefaultMachine {
		t.Errorf("defaults not applied: %+v", c)
	}
	n, _ := c.Network("tenant-a")
	if n.Gateway().String() != "10.10.1.1" {
		t.Errorf("gateway = %s", n.Gateway())
	}
	doc, err := PlaceholderDocument(c.Flavors[0].Placeholder)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), `"partial":true`) || !strings.Contains(string(doc), `"hostname":"warm"`) {
		t.Errorf("placeholder = %s", doc)
	}
	// The same as JSON.
	j := `{"networks": [{"name": "pool", "bridge": "pwpool0", "cidr": "10.254.0.0/24"}],
	  "flavors": [{"name": "small", "vcpus": 1, "memoryMiB": 512, "poolNetwork": "pool", "warm": 1,
	   "image": {"disk": "DIR/disk.qcow2", "kernel": "DIR/vmlinuz"}}]}`
	if _, err := Parse([]byte(strings.ReplaceAll(j, "DIR", dir))); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesEveryField(t *testing.T) {
	dir := files(t)
	y := `
libvirt: relative/sock
domainType: xen
maxBoots: 100
bootTimeout: 10ms
networks:
  - {name: pool, bridge: pwpool0, cidr: 10.254.0.0/24}
  - {name: pool, bridge: vnet0, cidr: 10.254.0.128/25}
  - {name: link, bridge: pwl0, cidr: 169.254.0.0/16}
  - {name: hostbits, bridge: pwh0, cidr: 10.1.0.1/24}
flavors:
  - name: Big_One
    vcpus: 0
    memoryMiB: 16
    poolNetwork: nowhere
    tenantNetwork: pool
    warm: -1
    image: {disk: DIR/missing.qcow2, kernel: vmlinuz}
    placeholder: {hostname: "-bad-"}
`
	_, err := Parse([]byte(strings.ReplaceAll(y, "DIR", dir)))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a ValidationError", err)
	}
	var paths []string
	for _, f := range ve.Fields {
		paths = append(paths, f.Path)
	}
	want := []string{"libvirt", "domainType", "maxBoots", "bootTimeout",
		"networks[1].name", "networks[1].bridge", "networks[1].cidr", "networks[2].cidr", "networks[3].cidr",
		"flavors[0].name", "flavors[0].vcpus", "flavors[0].memoryMiB", "flavors[0].warm", "flavors[0].poolNetwork",
		"flavors[0].image.disk", "flavors[0].image.kernel", "flavors[0].placeholder.hostname"}
	for _, p := range want {
		if !slices.Contains(paths, p) {
			t.Errorf("no error for %s; got %q", p, paths)
		}
	}
	for _, f := range ve.Fields {
		if f.Reason == "" {
			t.Errorf("%s: empty reason", f.Path)
		}
	}
}

func TestUnknownFieldAndTypeNamed(t *testing.T) {
	for in, path := range map[string]string{
		`{"networks": [], "flavors": [], "colour": 1}`: "colour",
		`{"maxBoots": "two"}`:                          "maxBoots",
		`{"bootTimeout": "soon"}`:                      "",
	} {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Errorf("%s: no error", in)
			continue
		}
		var ve *ValidationError
		if path != "" && (!errors.As(err, &ve) || ve.Fields[0].Path != path) {
			t.Errorf("%s: err = %v, want one naming %s", in, err, path)
		}
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	_, err := Load("/nonexistent/pool.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/pool.yaml") {
		t.Errorf("err = %v, want the file named", err)
	}
}
