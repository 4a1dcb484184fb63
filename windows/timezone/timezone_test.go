package timezone

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/windows/tzmap"
)

// fakeRunner plays tzutil: /g prints current, /s sets it.
type fakeRunner struct {
	current string
	failSet bool
	calls   []string
}

func (f *fakeRunner) Run(_ context.Context, c run.Cmd) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(c.Args, " "))
	switch {
	case c.Name != "tzutil":
		return nil, errors.New("not tzutil: " + c.String())
	case len(c.Args) == 1 && c.Args[0] == "/g":
		return []byte(f.current + "\r\n"), nil
	case len(c.Args) == 2 && c.Args[0] == "/s":
		if f.failSet {
			return nil, errors.New("exit status 1")
		}
		f.current = c.Args[1]
		return nil, nil
	}
	return nil, errors.New("unexpected command")
}

func (f *fakeRunner) Look(name string) (string, error) { return name, nil }

func TestApplyTimezone(t *testing.T) {
	tests := []struct {
		name, current, zone string
		wantChanged         bool
		wantCalls           []string
	}{
		{"change", "UTC", "Europe/Berlin", true, []string{"/g", "/s W. Europe Standard Time"}},
		{"already", "W. Europe Standard Time", "Europe/Berlin", false, []string{"/g"}},
		{"dst off", "W. Europe Standard Time_dstoff", "Europe/Berlin", true, []string{"/g", "/s W. Europe Standard Time"}},
		{"link name", "UTC", "Asia/Kolkata", true, []string{"/g", "/s India Standard Time"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRunner{current: tt.current}
			s := Setter{Runner: f}
			res, err := s.ApplyTimezone(context.Background(), tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed != tt.wantChanged || res.RebootRequired || !reflect.DeepEqual(f.calls, tt.wantCalls) {
				t.Errorf("result %+v, calls %q; want changed=%v, calls %q", res, f.calls, tt.wantChanged, tt.wantCalls)
			}
			f.calls = nil
			if res, err := s.ApplyTimezone(context.Background(), tt.zone); err != nil || res.Changed {
				t.Errorf("second apply: %+v, %v", res, err)
			}
		})
	}
}

func TestApplyTimezoneErrors(t *testing.T) {
	f := &fakeRunner{current: "UTC"}
	if _, err := (Setter{Runner: f}).ApplyTimezone(context.Background(), "Mars/Olympus"); !errors.Is(err, tzmap.ErrUnknownZone) {
		t.Errorf("unknown zone: %v", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("ran %q for an unknown zone", f.calls)
	}
	f.failSet = true
	if _, err := (Setter{Runner: f}).ApplyTimezone(context.Background(), "Europe/Berlin"); err == nil || !strings.Contains(err.Error(), "W. Europe Standard Time") {
		t.Errorf("failed tzutil: %v", err)
	}
}
