package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// staticRoute is the final config's static route, via the host end of the
// guest's static NIC.
const staticRoute = "10.99.0.0/16"

// staticAddr is the final config's address on the guest's static NIC.
func staticAddr(g *Guest) string {
	return netip.PrefixFrom(g.StaticNet.Addr().Next().Next().Next().Next().Next(), 24).String()
}

// scenarioKeys are the SSH keys of the scenario's users.
type scenarioKeys struct{ alice1, alice2, bob string }

func newKeys(t testing.TB) scenarioKeys {
	return scenarioKeys{SSHKey(t, "alice@laptop"), SSHKey(t, "alice@desk"), SSHKey(t, "bob@laptop")}
}

func partialDoc() Doc {
	return Doc{"partial": true, "hostname": "pool-standby-1"}
}

// finalDoc is step 3's document: hostname, timezone, two users, and the
// network: eth0 left to DHCP, eth1 (the static NIC) given an address and
// a route. (linux/network ignores addresses and routes of a dhcp4 NIC, so
// the static address lives on the second NIC.)
func finalDoc(g *Guest, k scenarioKeys, hostname string, aliceKeys ...string) Doc {
	return Doc{
		"hostname": hostname,
		"timezone": "Europe/Berlin",
		"users": []Doc{
			{"name": "alice", "groups": []string{"sudo", "webadmins"}, "sudo": "nopasswd", "shell": "/bin/bash",
				"sshAuthorizedKeys": aliceKeys, "passwordHash": TestPasswordHash},
			{"name": "bob", "groups": []string{"webadmins"}, "sudo": "password", "shell": "/bin/sh",
				"sshAuthorizedKeys": []string{k.bob}, "password": TestPassword},
		},
		"network": Doc{"interfaces": []Doc{
			{"mac": g.MAC, "dhcp4": true},
			{
				"mac":       strings.ToUpper(g.StaticMAC), // matched case-insensitively
				"addresses": []string{staticAddr(g)},
				"routes":    []Doc{{"to": staticRoute, "via": g.StaticGW.String()}},
			},
		}},
	}
}

// bootGuest starts the IMDS, registers the guest, gives it its pool lease
// and starts the agent; it returns once the agent reported `waiting`.
func bootGuest(t *testing.T, ctx context.Context, l *Lab, g *Guest) *Reports {
	t.Helper()
	if l.IMDS == nil {
		l.StartIMDS()
	}
	g.Register(ctx)
	if err := g.StartDHCP(ctx); err != nil {
		t.Fatal(err)
	}
	ensureIdentity(t, l, g)
	rep := l.Watch(g.ID)
	g.StartAgent()
	if _, err := rep.WaitFor(ctx, "waiting", State(status.StateWaiting, 0)); err != nil {
		t.Fatal(err)
	}
	return rep
}

// awaitSettled waits for gen to be applied and fails unless it ended in want.
func awaitSettled(t *testing.T, ctx context.Context, rep *Reports, gen int64, want string) Arrival {
	t.Helper()
	a, err := rep.WaitFor(ctx, fmt.Sprintf("generation %d settled", gen), Settled(gen))
	if err != nil {
		t.Fatal(err)
	}
	if a.State != want {
		t.Fatalf("generation %d: %s, want %s", gen, a, want)
	}
	return a
}

// TestScenario is issue 5's flow: pool (partial-ready), claim (re-mapped
// DHCP and a host-side link bounce), final config (provisioned, every
// effect checked in the guest), reconfigure (only the difference).
func TestScenario(t *testing.T) {
	l := NewLab(t, 1)
	g := l.Guests[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tm := NewTimings(t, "scenario: go test -count=1 -run 'TestScenario$' -v ./e2e/")
	k := newKeys(t)

	machineHost, _ := os.Hostname()
	machinePasswd, _ := os.ReadFile("/etc/passwd")
	rep := bootGuest(t, ctx, l, g)
	// The tenant's view: prewarm-agent status --follow inside the guest.
	follow := g.Start("status-follow", Bins(t).Agent, "status", "--follow", "--json")

	// 1. Pool: a placeholder config with the partial tag.
	t0 := time.Now()
	gen1 := l.Publish(ctx, g.ID, partialDoc())
	a := awaitSettled(t, ctx, rep, gen1, status.StatePartialReady)
	tm.Add("1 pool: publish → partial-ready", a.At.Sub(t0))
	if h := strings.TrimSpace(g.MustExec("hostname")); h != "pool-standby-1" {
		t.Errorf("pool hostname %q", h)
	}

	// 2. Claim: new reservation on a new network, host-side link bounce.
	claim(t, ctx, tm, g, rep)

	// 3. The final config.
	t0 = time.Now()
	gen3 := l.Publish(ctx, g.ID, finalDoc(g, k, "web-01", k.alice1, k.alice2))
	a = awaitSettled(t, ctx, rep, gen3, status.StateProvisioned)
	tm.Add("3 final: publish → provisioned", a.At.Sub(t0))
	for _, s := range a.Steps {
		t.Logf("  step %-8s ok=%v changed=%v %d ms", s.Name, s.OK, s.Changed, s.MS)
	}
	checkFinal(t, g, k, "web-01", k.alice1, k.alice2)
	shadow1 := readShadow(t, g)

	// 4. Reconfigure: a new hostname and one of alice's keys removed.
	t0 = time.Now()
	gen4 := l.Publish(ctx, g.ID, finalDoc(g, k, "web-02", k.alice1))
	a = awaitSettled(t, ctx, rep, gen4, status.StateProvisioned)
	tm.Add("4 reconfigure: publish → provisioned", a.At.Sub(t0))
	changed := map[string]bool{}
	for _, s := range a.Steps {
		t.Logf("  step %-8s ok=%v changed=%v %d ms", s.Name, s.OK, s.Changed, s.MS)
		changed[s.Name] = s.Changed
	}
	for name, want := range map[string]bool{status.StepHostname: true, status.StepTimezone: false, status.StepUsers: true, status.StepNetwork: false} {
		if changed[name] != want {
			t.Errorf("reconfigure: step %s changed=%v, want %v (only the difference is applied)", name, changed[name], want)
		}
	}
	checkFinal(t, g, k, "web-02", k.alice1)
	if shadow2 := readShadow(t, g); shadow2["alice"] != shadow1["alice"] || shadow2["bob"] != shadow1["bob"] {
		t.Errorf("reconfigure rewrote a password that did not change:\n before %q\n after  %q", shadow1, shadow2)
	}

	checkStatusLog(t, g, rep)
	checkNoSecret(t, l, g)
	if done, err := g.Agent.Exited(); done {
		t.Fatalf("agent exited: %v", err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if _, _, err := follow.Log.WaitFunc(fctx, 0, func(s string) bool {
		return strings.Contains(s, `"state":"provisioned"`) && strings.Contains(s, fmt.Sprintf(`"generation":%d`, gen4))
	}); err != nil {
		t.Errorf("prewarm-agent status --follow in the guest did not show generation %d provisioned: %v", gen4, err)
	}
	// Nothing of it touched this machine.
	if h, _ := os.Hostname(); h != machineHost {
		t.Errorf("this machine's hostname changed from %q to %q", machineHost, h)
	}
	if b, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(b, machinePasswd) {
		t.Errorf("this machine's /etc/passwd changed")
	}
}

// claim is step 2: the host moves the guest to Net2 in dnsmasq and bounces
// the host end of the veth; the agent renews and reports the new address,
// and its IMDS identity survives the change of address.
func claim(t *testing.T, ctx context.Context, tm *Timings, g *Guest, rep *Reports) {
	t.Helper()
	if err := g.Remap(ctx); err != nil {
		t.Fatal(err)
	}
	from := g.Agent.Log.Len()
	down := time.Now()
	if err := g.LinkDown(ctx); err != nil {
		t.Fatal(err)
	}
	up, err := g.LinkUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := rep.WaitFor(ctx, "dhcp-renewed with "+g.Addr2.String(), Renewed(g.Addr2.String()))
	if err != nil {
		t.Fatal(err)
	}
	tm.Add("2 claim: host link up → dhcp-renewed", a.At.Sub(up))
	// Where the time went, from the agent's log (same clock).
	t.Logf("  host: link down at +0 ms, up at +%d ms", up.Sub(down).Milliseconds())
	for _, line := range g.Agent.Log.Lines()[from:] {
		for _, m := range []string{`msg="link event"`, `msg="renewing DHCP lease"`, `msg="DHCP lease renewed"`, "event=dhcp-renewed"} {
			if strings.Contains(line, m) {
				if ts, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(strings.Fields(line)[0], "time=")); err == nil {
					t.Logf("  agent +%4d ms: %s", ts.Sub(down).Milliseconds(), line[strings.Index(line, "msg="):])
				}
			}
		}
	}
	as, err := g.Addrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(as, g.Addr1.String()+"/24") || !slices.Contains(as, g.Addr2.String()+"/24") {
		t.Fatalf("after the claim the guest holds %v, want %s and not %s", as, g.Addr2, g.Addr1)
	}
	// The identity is the host interface, not the address.
	r := guestHTTP(t, g, HTTPReq{URL: "http://" + IMDSAddr + "/metadata/v1/instance", Headers: map[string]string{"Metadata": "true"}})
	if r.Code != 200 || !strings.Contains(r.Body, `"`+g.ID+`"`) {
		t.Fatalf("instance after the claim: %d %s %s", r.Code, r.Body, r.Err)
	}
}

// checkFinal checks every effect of finalDoc in the guest's namespaces.
func checkFinal(t *testing.T, g *Guest, k scenarioKeys, hostname string, aliceKeys ...string) {
	t.Helper()
	// Hostname: the UTS namespace, /etc/hostname, /etc/hosts.
	if h := strings.TrimSpace(g.MustExec("hostname")); h != hostname {
		t.Errorf("hostname %q, want %q", h, hostname)
	}
	if b := readGuest(t, g, "/etc/hostname"); strings.TrimSpace(b) != hostname {
		t.Errorf("/etc/hostname %q", b)
	}
	if b := readGuest(t, g, "/etc/hosts"); !regexpLine(b, "127.0.1.1", hostname) {
		t.Errorf("/etc/hosts has no 127.0.1.1 %s line:\n%s", hostname, b)
	}
	// Timezone.
	if l := strings.TrimSpace(g.MustExec("readlink", "/etc/localtime")); !strings.HasSuffix(l, "zoneinfo/Europe/Berlin") {
		t.Errorf("/etc/localtime -> %q", l)
	}
	if b, err := os.ReadFile(g.Path("/etc/timezone")); err == nil && strings.TrimSpace(string(b)) != "Europe/Berlin" {
		t.Errorf("/etc/timezone %q", b)
	}
	// Users: one passwd line each, hashes, groups, sudoers, keys.
	passwd := readGuest(t, g, "/etc/passwd")
	for _, u := range []string{"alice", "bob"} {
		if n := strings.Count("\n"+passwd, "\n"+u+":"); n != 1 {
			t.Errorf("/etc/passwd has %d lines for %s", n, u)
		}
	}
	if !regexpLine(passwd, "alice:", "/bin/bash") {
		t.Errorf("alice's shell is not /bin/bash:\n%s", passwd)
	}
	sh := readShadow(t, g)
	if sh["alice"] != TestPasswordHash {
		t.Errorf("alice's shadow hash %q", sh["alice"])
	}
	if !strings.HasPrefix(sh["bob"], "$") || strings.Contains(sh["bob"], TestPassword) {
		t.Errorf("bob's shadow entry %q is not a hash of his password", sh["bob"])
	}
	groups := readGuest(t, g, "/etc/group")
	if m := groupMembers(groups, "webadmins"); !slices.Contains(m, "alice") || !slices.Contains(m, "bob") {
		t.Errorf("webadmins members %v", m)
	}
	if m := groupMembers(groups, "sudo"); !slices.Contains(m, "alice") {
		t.Errorf("sudo members %v", m)
	}
	checkSudoers(t, g)
	checkKeys(t, g, "alice", aliceKeys, k)
	checkKeys(t, g, "bob", []string{k.bob}, k)
	// Network: the reserved DHCP address on eth0, the static address and
	// route on eth1.
	if addrs := g.MustExec("ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(addrs, " "+g.reserved.String()+"/24 ") {
		t.Errorf("eth0 lacks %s:\n%s", g.reserved, addrs)
	}
	if addrs := g.MustExec("ip", "-4", "-o", "addr", "show", "dev", "eth1"); !strings.Contains(addrs, " "+staticAddr(g)+" ") {
		t.Errorf("eth1 lacks %s:\n%s", staticAddr(g), addrs)
	}
	if r := g.MustExec("ip", "-4", "route", "show", staticRoute); !strings.Contains(r, "via "+g.StaticGW.String()) {
		t.Errorf("route %s: %q", staticRoute, r)
	}
	if r := g.MustExec("ip", "-4", "route", "get", "10.99.1.1"); !strings.Contains(r, "dev eth1") {
		t.Errorf("route to 10.99.1.1: %q", r)
	}
}

func readGuest(t testing.TB, g *Guest, path string) string {
	t.Helper()
	b, err := os.ReadFile(g.Path(path))
	if err != nil {
		t.Errorf("guest %s: %v", path, err)
	}
	return string(b)
}

// regexpLine reports whether some line of text starts with prefix and
// contains word.
func regexpLine(text, prefix, word string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, word) {
			return true
		}
	}
	return false
}

func readShadow(t testing.TB, g *Guest) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(readGuest(t, g, "/etc/shadow"), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 1 {
			m[f[0]] = f[1]
		}
	}
	return m
}

func groupMembers(group, name string) []string {
	for _, line := range strings.Split(group, "\n") {
		f := strings.Split(line, ":")
		if len(f) == 4 && f[0] == name {
			return strings.Split(f[3], ",")
		}
	}
	return nil
}

// checkSudoers finds the drop-ins that name alice and bob: alice without a
// password, bob with one, each file 0440.
func checkSudoers(t *testing.T, g *Guest) {
	t.Helper()
	dir := g.Path("/etc/sudoers.d")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("sudoers.d: %v", err)
		return
	}
	rules := map[string]string{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, u := range []string{"alice", "bob"} {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), u+" ") {
					rules[u] += line
					if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o440 {
						t.Errorf("%s: mode %v, want 0440", p, fi.Mode().Perm())
					}
				}
			}
		}
	}
	if !strings.Contains(rules["alice"], "NOPASSWD") {
		t.Errorf("alice's sudo rule %q lacks NOPASSWD", rules["alice"])
	}
	if rules["bob"] == "" || strings.Contains(rules["bob"], "NOPASSWD") {
		t.Errorf("bob's sudo rule %q, want one with a password", rules["bob"])
	}
}

// checkKeys checks user's authorized_keys holds exactly want of the
// scenario's keys, with the modes and owner sshd insists on.
func checkKeys(t *testing.T, g *Guest, user string, want []string, k scenarioKeys) {
	t.Helper()
	home := g.Path("/home/" + user)
	p := filepath.Join(home, ".ssh", "authorized_keys")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%s's authorized_keys: %v", user, err)
		return
	}
	for _, key := range []string{k.alice1, k.alice2, k.bob} {
		has := bytes.Contains(b, []byte(key))
		if has != slices.Contains(want, key) {
			t.Errorf("%s's authorized_keys: key %q present=%v", user, key[len(key)-12:], has)
		}
	}
	uid := lookupUID(t, g, user)
	for path, mode := range map[string]os.FileMode{filepath.Join(home, ".ssh"): 0o700, p: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
			t.Errorf("%s: owner %d, want %s (%d)", path, st.Uid, user, uid)
		}
	}
}

func lookupUID(t testing.TB, g *Guest, user string) int {
	for _, line := range strings.Split(readGuest(t, g, "/etc/passwd"), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 && f[0] == user {
			var uid int
			fmt.Sscan(f[2], &uid)
			return uid
		}
	}
	t.Errorf("no passwd entry for %s", user)
	return -1
}

// checkStatusLog checks the tenant's status log: one JSON report a line,
// seq growing by one, the current report beside it, at most one
// partial-ready or provisioned per generation, and the same reports the
// IMDS received.
func checkStatusLog(t *testing.T, g *Guest, rep *Reports) []status.Report {
	t.Helper()
	// The agent appends a report to the log, then replaces status.json
	// with it: read between the two (an agent restarted a moment ago
	// writes its "starting"), status.json is one report behind. Both are
	// read again, at most 5 s, until they agree or the time is up; the
	// check below then fails on a status.json that stays behind.
	var logs []status.Report
	var cur []byte
	var curErr error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		logs = readStatusLog(t, g)
		if len(logs) == 0 {
			t.Fatal("empty status log")
		}
		cur, curErr = os.ReadFile(g.Path("/run/prewarm/status.json"))
		var c status.Report
		if curErr == nil && json.Unmarshal(cur, &c) == nil && c.Seq == logs[len(logs)-1].Seq || time.Now().After(deadline) {
			break
		}
	}
	final := map[string]int{}
	for i, r := range logs {
		if i > 0 && r.Seq != logs[i-1].Seq+1 {
			t.Errorf("status log: seq %d follows %d", r.Seq, logs[i-1].Seq)
		}
		if r.Event == "" && (r.State == status.StatePartialReady || r.State == status.StateProvisioned) {
			final[fmt.Sprintf("%s gen %d", r.State, r.Generation)]++
		}
	}
	for k, n := range final {
		if n > 1 {
			t.Errorf("status log: %s reported %d times", k, n)
		}
	}
	if curErr != nil {
		t.Errorf("current status: %v", curErr)
	} else {
		var c status.Report
		if err := json.Unmarshal(cur, &c); err != nil || c.Seq != logs[len(logs)-1].Seq {
			t.Errorf("status.json (seq %d, %v) is not the log's last report (seq %d)", c.Seq, err, logs[len(logs)-1].Seq)
		}
	}
	if fi, err := os.Stat(g.Path("/var/log/prewarm/status.jsonl")); err == nil && fi.Mode().Perm() != 0o644 {
		t.Errorf("status.jsonl mode %v, want 0644", fi.Mode().Perm())
	}
	// What the IMDS got is what the log holds.
	bySeq := map[uint64]status.Report{}
	for _, r := range logs {
		bySeq[r.Seq] = r
	}
	for _, a := range rep.All() {
		r, ok := bySeq[a.Seq]
		if !ok {
			t.Errorf("IMDS got seq %d (%s) that the status log lacks", a.Seq, a)
			continue
		}
		if r.State != a.State || r.Generation != a.Generation || r.Event != a.Event {
			t.Errorf("seq %d: log %s/%d/%s, IMDS %s", a.Seq, r.State, r.Generation, r.Event, a)
		}
	}
	return logs
}

func readStatusLog(t testing.TB, g *Guest) []status.Report {
	t.Helper()
	f, err := os.Open(g.Path("/var/log/prewarm/status.jsonl"))
	if err != nil {
		t.Fatalf("status log: %v", err)
	}
	defer f.Close()
	var out []status.Report
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r status.Report
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Errorf("status log line %d is not a report: %v: %q", n, err, sc.Text())
			continue
		}
		out = append(out, r)
	}
	return out
}

// checkNoSecret checks the plaintext password appears nowhere: not in the
// status log, the agent's or the IMDS's log, nor the admin read-back.
func checkNoSecret(t *testing.T, l *Lab, g *Guest) {
	t.Helper()
	for _, p := range []string{g.Path("/var/log/prewarm/status.jsonl"), g.Path("/run/prewarm/status.json"), g.Agent.LogPath, l.IMDS.LogPath} {
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(TestPassword)) {
			t.Errorf("%s holds the plaintext password", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	doc, err := l.Admin.GetConfig(ctx, g.ID)
	if err != nil {
		t.Errorf("read-back: %v", err)
		return
	}
	b, _ := json.Marshal(doc)
	if bytes.Contains(b, []byte(TestPassword)) || !bytes.Contains(b, []byte("REDACTED")) {
		t.Errorf("admin read-back does not redact the password: %s", b)
	}
}

// ensureIdentity checks that a request from g arriving on its host
// interface is attributed to g: the IMDS's device-bound listener, not its
// device-less one, must have accepted it (TestIMDSListenerOrder is the
// focused test of that).
func ensureIdentity(t *testing.T, l *Lab, g *Guest) {
	t.Helper()
	r := guestHTTP(t, g, HTTPReq{URL: "http://" + IMDSAddr + "/metadata/v1/instance", Headers: map[string]string{"Metadata": "true"}})
	if r.Code != 200 || !strings.Contains(r.Body, `"`+g.ID+`"`) {
		t.Fatalf("%s is not recognised on its host interface %s: %d %s %s", g.ID, g.HostIf, r.Code, strings.TrimSpace(r.Body), r.Err)
	}
}
