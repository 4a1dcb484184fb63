package dialect

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/metadata"

	"github.com/prewarm/prewarm/shared/config"
)

// gceClient is Google's metadata client for the instance at src, pointed
// at srv through GCE_METADATA_HOST as Google documents for emulators.
func gceClient(t *testing.T, srvURL, src string) *metadata.Client {
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srvURL, "http://"))
	hc := clientFrom(t, src)
	hc.CheckRedirect = nil // follow GCE's directory redirects, as a default client does
	return metadata.NewWithOptions(&metadata.Options{Client: hc})
}

func gceGet(t *testing.T, c *metadata.Client, suffix string) string {
	t.Helper()
	v, err := c.GetWithContext(context.Background(), suffix)
	if err != nil {
		t.Fatalf("Get(%q): %v", suffix, err)
	}
	return v
}

// TestGCEClient drives the GCE dialect with cloud.google.com/go/compute/metadata
// from three instances, each seeing its own data only.
func TestGCEClient(t *testing.T) {
	h := newHost(t, []string{NameGCE}, Settings{AvailabilityZone: "europe-west4-b", GCEProjectID: "pool-project"})
	fleet(h)
	srv := h.start(t)
	ctx := context.Background()
	a := gceClient(t, srv.URL, addrA)
	b := gceClient(t, srv.URL, addrB)
	c := gceClient(t, srv.URL, addrC)

	if !a.OnGCEWithContext(ctx) {
		t.Error("OnGCE = false")
	}
	for _, tc := range []struct {
		name string
		get  func(context.Context) (string, error)
		want string
	}{
		{"vm-a InstanceName", a.InstanceNameWithContext, "vm-a"},
		{"vm-b InstanceName", b.InstanceNameWithContext, "vm-b"},
		{"vm-c InstanceName", c.InstanceNameWithContext, "vm-c"},
		{"vm-a InstanceID", a.InstanceIDWithContext, numericID("vm-a")},
		// InstanceID and ProjectID are cached process-wide by the
		// library; other instances are asked through Get.
		{"vm-b instance/id", func(ctx context.Context) (string, error) { return b.GetWithContext(ctx, "instance/id") }, numericID("vm-b")},
		{"vm-a Hostname", a.HostnameWithContext, "web-a.c.pool-project.internal"},
		{"vm-b Hostname", b.HostnameWithContext, "web-b.c.pool-project.internal"},
		{"vm-c Hostname", c.HostnameWithContext, "vm-c.c.pool-project.internal"},
		{"vm-a Zone", a.ZoneWithContext, "europe-west4-b"},
		{"vm-a InternalIP", a.InternalIPWithContext, "10.1.0.5"},
		{"vm-b InternalIP", b.InternalIPWithContext, addrB},
		{"ProjectID", a.ProjectIDWithContext, "pool-project"},
		{"NumericProjectID", a.NumericProjectIDWithContext, numericID("pool-project")},
	} {
		got, err := tc.get(ctx)
		if err != nil || got != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if numericID("vm-a") == numericID("vm-b") {
		t.Error("numeric ids collide")
	}

	keys, err := a.InstanceAttributeValueWithContext(ctx, "ssh-keys")
	if want := "alice:" + keyAlice1 + "\nalice:" + keyAlice2 + "\nbob:" + keyBob; err != nil || keys != want {
		t.Errorf("vm-a ssh-keys = %q, %v; want %q", keys, err, want)
	}
	if keys, err := b.InstanceAttributeValueWithContext(ctx, "ssh-keys"); err != nil || keys != "carol:"+keyCarol {
		t.Errorf("vm-b ssh-keys = %q, %v", keys, err)
	}
	if ud, err := a.InstanceAttributeValueWithContext(ctx, "user-data"); err != nil || ud != userDataA {
		t.Errorf("vm-a user-data = %q, %v", ud, err)
	}
	var nd metadata.NotDefinedError
	if _, err := b.InstanceAttributeValueWithContext(ctx, "user-data"); !errors.As(err, &nd) {
		t.Errorf("vm-b user-data: %v, want NotDefinedError", err)
	}
	if attrs, err := a.InstanceAttributesWithContext(ctx); err != nil || strings.Join(attrs, ",") != "ssh-keys,user-data" {
		t.Errorf("vm-a attributes = %q, %v", attrs, err)
	}
	if attrs, err := c.GetWithContext(ctx, "instance/attributes/"); err != nil || attrs != "" {
		t.Errorf("vm-c attributes = %q, %v; want none", attrs, err)
	}

	// Recursive JSON, as Google's guest agent reads it: typed, camelCase.
	var inst struct {
		ID                json.Number       `json:"id"`
		Name              string            `json:"name"`
		Hostname          string            `json:"hostname"`
		Zone              string            `json:"zone"`
		Attributes        map[string]string `json:"attributes"`
		NetworkInterfaces []struct {
			IP, MAC, Gateway, Subnetmask, Network string
			MTU                                   int
		} `json:"networkInterfaces"`
	}
	dec := json.NewDecoder(strings.NewReader(gceGet(t, a, "instance/?recursive=true")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&inst); err != nil {
		t.Fatal(err)
	}
	if inst.ID.String() != numericID("vm-a") || inst.Name != "vm-a" || inst.Attributes["user-data"] != userDataA ||
		len(inst.NetworkInterfaces) != 1 || inst.NetworkInterfaces[0].MAC != macA || inst.NetworkInterfaces[0].IP != "10.1.0.5" ||
		inst.NetworkInterfaces[0].Subnetmask != "255.255.255.0" || inst.NetworkInterfaces[0].Gateway != "10.1.0.1" || inst.NetworkInterfaces[0].MTU != 1460 {
		t.Errorf("recursive instance = %+v", inst)
	}
	// cloud-init's GCE datasource asks with a capital True.
	var attrs map[string]string
	if err := json.Unmarshal([]byte(gceGet(t, b, "instance/attributes/?recursive=True")), &attrs); err != nil || len(attrs) != 1 || attrs["ssh-keys"] != "carol:"+keyCarol {
		t.Errorf("vm-b attributes JSON = %v, %v", attrs, err)
	}
	if got := gceGet(t, a, "project/?recursive=true"); got != `{"attributes":{},"numericProjectId":`+numericID("pool-project")+`,"projectId":"pool-project"}` {
		t.Errorf("project recursive = %s", got)
	}
	if got := gceGet(t, a, ""); got != "instance/\nproject/\n" {
		t.Errorf("root listing %q", got)
	}
	if got := gceGet(t, a, "instance"); got != "attributes/\nhostname\nid\nname\nnetwork-interfaces/\nzone\n" {
		t.Errorf("instance listing (through the redirect) %q", got)
	}
	if got := gceGet(t, a, "instance/network-interfaces/0/?recursive=true&alt=text"); got != "gateway 10.1.0.1\nip 10.1.0.5\nmac "+macA+"\nmtu 1460\nnetwork projects/"+numericID("pool-project")+"/networks/default\nsubnetmask 255.255.255.0\n" {
		t.Errorf("alt=text %q", got)
	}
	if got := gceGet(t, a, "instance/name?alt=json"); got != `"vm-a"` {
		t.Errorf("alt=json leaf %q", got)
	}
}

// TestGCESubscribe drives wait_for_change through the library's
// Subscribe: a publish for the subscriber's instance wakes it with the new
// value; a publish for another instance does not.
func TestGCESubscribe(t *testing.T) {
	h := newHost(t, []string{NameGCE}, Settings{})
	_, bInst, _ := fleet(h)
	aInst := h.byAddr[mustAddr(addrA)]
	srv := h.start(t)
	b := gceClient(t, srv.URL, addrB)

	type event struct {
		v  string
		ok bool
	}
	events := make(chan event, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- b.SubscribeWithContext(ctx, "instance/attributes/ssh-keys", func(_ context.Context, v string, ok bool) error {
			events <- event{v, ok}
			if strings.Contains(v, "dave") {
				return errors.New("seen enough")
			}
			return nil
		})
	}()
	next := func() event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no Subscribe callback within 10 s")
			return event{}
		}
	}
	if e := next(); !e.ok || e.v != "carol:"+keyCarol {
		t.Fatalf("first value %+v", e)
	}
	// Wait until the subscriber is parked in its long-poll.
	parked := func() bool {
		for _, r := range h.requests() {
			if strings.Contains(r, "ssh-keys") {
				return true
			}
		}
		return false
	}
	for i := 0; i < 100 && !parked(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)

	// Another instance's publish and an unrelated change of vm-b's own
	// document do not wake the subscriber with a new value.
	aInst.publish(&config.Document{Hostname: "other", Users: []config.User{{Name: "eve", SSHAuthorizedKeys: []string{keyBob}}}})
	d := docB()
	d.Hostname = "web-b2"
	bInst.publish(d)
	select {
	case e := <-events:
		t.Fatalf("woken by an unrelated change: %+v", e)
	case <-time.After(300 * time.Millisecond):
	}

	d = docB()
	d.Partial = false
	d.Users = append(d.Users, config.User{Name: "dave", SSHAuthorizedKeys: []string{keyAlice1}})
	bInst.publish(d)
	if e := next(); !e.ok || e.v != "carol:"+keyCarol+"\ndave:"+keyAlice1 {
		t.Fatalf("after publish %+v", e)
	}
	if err := <-done; err == nil || err.Error() != "seen enough" {
		t.Errorf("Subscribe returned %v", err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestGCERaw checks GCE's header rules and long-poll parameters with raw
// requests.
func TestGCERaw(t *testing.T) {
	h := newHost(t, []string{NameGCE}, Settings{})
	_, bInst, _ := fleet(h)
	srv := h.start(t)
	b := clientFrom(t, addrB)
	google := map[string]string{"Metadata-Flavor": "Google"}

	code, hdr, body := do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name", nil)
	if code != 403 || !strings.Contains(body, "Missing Metadata-Flavor:Google header.") || hdr.Get("Metadata-Flavor") != "Google" {
		t.Errorf("without Metadata-Flavor: %d %q", code, body)
	}
	code, _, _ = do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name", map[string]string{"Metadata-Flavor": "google"})
	if code != 403 {
		t.Errorf("Metadata-Flavor: google (lower case): %d, want 403", code)
	}
	code, hdr, body = do(t, b, "GET", srv.URL+"/", nil)
	if code != 200 || hdr.Get("Metadata-Flavor") != "Google" {
		t.Errorf("root: %d %q %v", code, body, hdr)
	}
	code, hdr, body = do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name", google)
	if code != 200 || body != "vm-b" || hdr.Get("Metadata-Flavor") != "Google" || hdr.Get("Content-Type") != "application/text" || len(hdr.Get("ETag")) != 16 {
		t.Errorf("name: %d %q %v", code, body, hdr)
	}
	etag := hdr.Get("ETag")
	code, hdr, _ = do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance?x=1", google)
	if code != 301 || hdr.Get("Location") != "/computeMetadata/v1/instance/?x=1" {
		t.Errorf("directory without slash: %d %v", code, hdr)
	}
	for _, q := range []string{"recursive=maybe", "alt=xml", "wait_for_change=true&timeout_sec=0", "wait_for_change=true&timeout_sec=x", "wait_for_change=perhaps"} {
		if code, _, _ := do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name?"+q, google); code != 400 {
			t.Errorf("?%s: %d, want 400", q, code)
		}
	}
	if code, _, _ := do(t, b, "POST", srv.URL+"/computeMetadata/v1/instance/name", google); code != 405 {
		t.Errorf("POST: %d, want 405", code)
	}
	if code, _, _ := do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name", map[string]string{"Metadata-Flavor": "Google", "X-Forwarded-For": "1.2.3.4"}); code != 403 {
		t.Errorf("X-Forwarded-For: %d, want 403", code)
	}
	if code, _, _ := do(t, clientFrom(t, addrUnknown), "GET", srv.URL+"/computeMetadata/v1/instance/name", google); code != 404 {
		t.Errorf("unknown caller: %d, want 404", code)
	}

	// A stale last_etag answers at once; a current one waits for the
	// timeout and answers the same value.
	start := time.Now()
	code, _, body = do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name?wait_for_change=true&last_etag=0123456789abcdef", google)
	if code != 200 || body != "vm-b" || time.Since(start) > 2*time.Second {
		t.Errorf("stale last_etag: %d %q after %v", code, body, time.Since(start))
	}
	start = time.Now()
	code, hdr, body = do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name?wait_for_change=true&timeout_sec=1&last_etag="+etag, google)
	if el := time.Since(start); code != 200 || body != "vm-b" || hdr.Get("ETag") != etag || el < 900*time.Millisecond || el > 5*time.Second {
		t.Errorf("current last_etag: %d %q after %v", code, body, el)
	}
	// The instance goes away while a long-poll waits: 404.
	go func() {
		time.Sleep(200 * time.Millisecond)
		bInst.remove()
	}()
	code, _, _ = do(t, b, "GET", srv.URL+"/computeMetadata/v1/instance/name?wait_for_change=true&timeout_sec=10&last_etag="+etag, google)
	if code != 404 {
		t.Errorf("deleted while waiting: %d, want 404", code)
	}
	// Shutdown answers parked long-polls at once.
	h2 := newHost(t, []string{NameGCE}, Settings{})
	fleet(h2)
	srv2 := h2.start(t)
	go func() {
		time.Sleep(200 * time.Millisecond)
		close(h2.shutdown)
	}()
	start = time.Now()
	code, _, _ = do(t, clientFrom(t, addrA), "GET", srv2.URL+"/computeMetadata/v1/instance/name?wait_for_change=true&timeout_sec=30", google)
	if code != 200 || time.Since(start) > 5*time.Second {
		t.Errorf("long-poll at shutdown: %d after %v", code, time.Since(start))
	}
}

// A huge timeout_sec is clamped to the longest wait, not overflowed into a
// negative or tiny one that answers at once.
func TestGCETimeoutSecClamped(t *testing.T) {
	for _, v := range []string{"300", "100000", "9223372036", "9223372037", "18446744073", "9223372036854775807"} {
		p, msg := parseGCEParams(url.Values{"wait_for_change": {"true"}, "timeout_sec": {v}})
		if msg != "" {
			t.Fatalf("timeout_sec=%s: %s", v, msg)
		}
		if p.timeout <= 0 || p.timeout > gceMaxWait {
			t.Errorf("timeout_sec=%s: timeout %v, want within (0, %v]", v, p.timeout, gceMaxWait)
		}
		if v != "300" && p.timeout != gceMaxWait {
			t.Errorf("timeout_sec=%s: timeout %v, want %v", v, p.timeout, gceMaxWait)
		}
	}
}
