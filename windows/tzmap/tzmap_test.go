package tzmap

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestToWindows(t *testing.T) {
	tests := []struct {
		zone, want string
	}{
		{"Europe/Berlin", "W. Europe Standard Time"},
		{"America/New_York", "Eastern Standard Time"},
		{"UTC", "UTC"},
		{"Etc/UTC", "UTC"},
		{"Etc/GMT", "UTC"},
		{"GMT", "UTC"},
		{"Etc/GMT+5", "SA Pacific Standard Time"},
		{"Etc/GMT-14", "Line Islands Standard Time"},
		// Modern tzdata names whose CLDR canonical ID is the old one.
		{"Asia/Kolkata", "India Standard Time"},
		{"Asia/Calcutta", "India Standard Time"},
		{"Europe/Kyiv", "FLE Standard Time"},
		{"America/Argentina/Buenos_Aires", "Argentina Standard Time"},
		{"America/Nuuk", "Greenland Standard Time"},
		{"Asia/Ho_Chi_Minh", "SE Asia Standard Time"},
		{"Asia/Kathmandu", "Nepal Standard Time"},
		{"Asia/Yangon", "Myanmar Standard Time"},
		{"Pacific/Kanton", "UTC+13"},
		{"America/Indiana/Indianapolis", "US Eastern Standard Time"},
		{"America/Kentucky/Louisville", "Eastern Standard Time"},
		{"Atlantic/Faroe", "GMT Standard Time"},
		{"Africa/Asmara", "E. Africa Standard Time"},
		{"Pacific/Chuuk", "West Pacific Standard Time"},
		{"America/Atikokan", "SA Pacific Standard Time"},
		{"EST5EDT", "Eastern Standard Time"},
		{"CET", "Romance Standard Time"},
		// Backward links.
		{"US/Eastern", "Eastern Standard Time"},
		{"US/Pacific", "Pacific Standard Time"},
		{"Japan", "Tokyo Standard Time"},
		{"Asia/Istanbul", "Turkey Standard Time"},
		{"Europe/Belfast", "GMT Standard Time"},
		// Zones CLDR added late.
		{"America/Whitehorse", "Yukon Standard Time"},
		{"America/Ciudad_Juarez", "Mountain Standard Time"},
		{"Asia/Almaty", "West Asia Standard Time"},
	}
	for _, tt := range tests {
		got, err := ToWindows(tt.zone)
		if err != nil || got != tt.want {
			t.Errorf("ToWindows(%q) = %q, %v; want %q", tt.zone, got, err, tt.want)
		}
	}
}

func TestToWindowsUnknown(t *testing.T) {
	for _, zone := range []string{"", "Local", "Nowhere/Atlantis", "europe/berlin", "Factory"} {
		if got, err := ToWindows(zone); !errors.Is(err, ErrUnknownZone) {
			t.Errorf("ToWindows(%q) = %q, %v; want ErrUnknownZone", zone, got, err)
		}
	}
}

func TestEtcOffsetsAllMap(t *testing.T) {
	for i := -14; i <= 12; i++ {
		zone := fmt.Sprintf("Etc/GMT%+d", i)
		if i == 0 {
			zone = "Etc/GMT"
		}
		if _, err := ToWindows(zone); err != nil {
			t.Errorf("ToWindows(%q): %v", zone, err)
		}
	}
}

func TestEveryLinkResolves(t *testing.T) {
	tab := Default()
	// A link whose target zone Windows has a zone for must map like its
	// target; links to zones without one (Antarctica/Troll...) may not.
	for name, target := range tab.linkTo {
		want, err := tab.ToWindows(target)
		if err != nil {
			continue
		}
		got, err := tab.ToWindows(name)
		if err != nil {
			t.Errorf("ToWindows(%q) (link to %q): %v", name, target, err)
			continue
		}
		if _, direct := tab.toWindows[name]; !direct && got != want {
			t.Errorf("ToWindows(%q) = %q, its target %q gives %q", name, got, target, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse([]byte("<supplementalData/>"), ""); err == nil {
		t.Error("Parse of a document without mapZone succeeded")
	}
	conflict := `<supplementalData><windowsZones><mapTimezones>
<mapZone other="A" territory="001" type="X/Y"/><mapZone other="B" territory="ZZ" type="X/Y"/>
</mapTimezones></windowsZones></supplementalData>`
	if _, err := Parse([]byte(conflict), ""); err == nil {
		t.Error("Parse of a conflicting mapping succeeded")
	}
	if _, err := Parse(windowsZonesXML, "only-one-field\n"); err == nil {
		t.Error("Parse of a malformed link line succeeded")
	}
}

func TestIsWindowsID(t *testing.T) {
	tab := Default()
	if !tab.IsWindowsID("UTC") || !tab.IsWindowsID("Pacific Standard Time") || tab.IsWindowsID("Mars Standard Time") {
		t.Error("IsWindowsID gives wrong answers")
	}
}

// TestHostTzdataZonesMap checks every zone of the host's tzdata (when it has
// tzdata.zi) against the table: only zones Windows has no zone for may fail.
func TestHostTzdataZonesMap(t *testing.T) {
	b, err := os.ReadFile("/usr/share/zoneinfo/tzdata.zi")
	if err != nil {
		t.Skipf("no host tzdata: %v", err)
	}
	unmapped := map[string]bool{"Antarctica/Troll": true, "Factory": true, "America/Coyhaique": true}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "Z" && f[0] != "L") {
			continue
		}
		name := f[1]
		if f[0] == "L" {
			name = f[2]
		}
		if _, err := ToWindows(name); err != nil && !unmapped[name] && !unmapped[f[1]] {
			t.Errorf("ToWindows(%q): %v", name, err)
		}
	}
}
