package etcdstore

import (
	"io"
	"log/slog"
	"testing"
)

func testStore() *Store {
	return &Store{prefix: "/p/", host: "h1", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestMirrorChecksConfigs(t *testing.T) {
	s := testStore()
	m := newMirror()
	m.put(s, "/p/hosts/h1/registrations/vm-1", []byte(`{"addresses":["10.0.0.1"]}`))
	good := `{"instanceId":"vm-1","generation":2,"hostname":"ok"}`
	for _, tc := range []struct {
		name, val string
		keep      bool
	}{
		{"valid", good, true},
		{"not json", `{"instanceId":`, false},
		{"unknown field", `{"instanceId":"vm-1","generation":3,"bogus":1}`, false},
		{"invalid hostname", `{"instanceId":"vm-1","generation":3,"hostname":"-x-"}`, false},
		{"other instance", `{"instanceId":"vm-2","generation":3}`, false},
		{"no generation", `{"instanceId":"vm-1"}`, false},
	} {
		id, _ := m.put(s, "/p/hosts/h1/configs/vm-1", []byte(tc.val))
		in, _ := m.instance("vm-1", "h1")
		if (id != "") != tc.keep || string(in.Config) != good || in.Generation != 2 {
			t.Errorf("%s: id %q, served %s (generation %d); want the valid document kept", tc.name, id, in.Config, in.Generation)
		}
	}
}

// FuzzMirrorPut feeds arbitrary keys and values, as a control plane could
// write them, to the mirror: it must never panic, and whatever it serves
// is a document for that instance with a positive generation.
func FuzzMirrorPut(f *testing.F) {
	f.Add("/p/hosts/h1/registrations/vm-1", []byte(`{"addresses":["10.0.0.1"]}`))
	f.Add("/p/hosts/h1/configs/vm-1", []byte(`{"instanceId":"vm-1","generation":1}`))
	f.Add("/p/laststatus/vm-1", []byte(`{"seq":1,"state":"provisioned"}`))
	f.Add("/p/hosts//configs/", []byte(`null`))
	f.Add("/p/hosts/h1/configs/vm-1/x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		s := testStore()
		m := newMirror()
		m.put(s, "/p/hosts/h1/registrations/vm-1", []byte(`{}`))
		id, _ := m.put(s, key, val)
		s.keyID(key)
		if id != "" {
			m.put(s, key, nil)
		}
		for _, in := range m.instances("h1") {
			if in.Config != nil && in.Generation <= 0 {
				t.Fatalf("serves %s with generation %d", in.Config, in.Generation)
			}
		}
	})
}
