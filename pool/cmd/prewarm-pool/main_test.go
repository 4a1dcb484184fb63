package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/pool/controller"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/cli"
)

// serveUnix answers the controller's API on a Unix socket with h.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "pool.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// pool runs the CLI with stdin and returns its exit code and output.
func pool(stdin string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

// answer is a controller that answers every request with status and an
// error object (the controller's own form, pool/controller/http.go).
func answer(status int, body api.Error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.ContentTypeJSON)
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	})
}

func writeDoc(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageErrorsExitTwo(t *testing.T) {
	doc := writeDoc(t, `{}`)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "no command given: claim, release, serve, status, version"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"claim"}, "claim wants FLAVOR (1 argument(s)), got 0"},
		{[]string{"claim", "small"}, "claim wants --config DOC.json"},
		{[]string{"claim", "a", "b", "--config", doc}, "claim wants FLAVOR"},
		{[]string{"claim", "small", "--config", doc, "--output", "yaml"}, "want table or json"},
		{[]string{"claim", "small", "--config", doc, "--timeout", "0s"}, "--timeout 0s: want a positive duration"},
		{[]string{"claim", "small", "--config", doc, "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`},
		{[]string{"claim", "small", "-config", doc}, "unknown shorthand flag"},
		{[]string{"release"}, "release wants VM (1 argument(s)), got 0"},
		{[]string{"status", "extra"}, `status takes no arguments, got ["extra"]`},
		{[]string{"status", "--nope"}, "unknown flag: --nope"},
		{[]string{"serve"}, "serve wants --config FILE"},
		{[]string{"serve", "--config", doc, "--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"serve", "--config", doc, "--log-format", "xml"}, `--log-format "xml": want text or json`},
	} {
		code, _, stderr := pool("", tt.args...)
		if code != cli.ExitUsage {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", tt.args, code, stderr)
		}
		if !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "\nhint: ") {
			t.Errorf("%q: stderr %q does not say %q with a hint", tt.args, stderr, tt.want)
		}
		if strings.Count(stderr, "prewarm-pool:") != 1 {
			t.Errorf("%q: stderr names the program %d times: %q", tt.args, strings.Count(stderr, "prewarm-pool:"), stderr)
		}
	}
	// An environment variable the flag refuses is a usage error naming it.
	t.Setenv("PREWARM_POOL_TIMEOUT", "soon")
	code, _, stderr := pool("", "claim", "small", "--config", doc, "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != cli.ExitUsage || !strings.Contains(stderr, "PREWARM_POOL_TIMEOUT") {
		t.Errorf("PREWARM_POOL_TIMEOUT=soon: exit %d, stderr %q", code, stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"claim", "--help"}, {"claim", "-h"}, {"version"}, {"--version"}} {
		code, out, stderr := pool("", args...)
		if code != 0 || out == "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, stderr)
		}
	}
	_, out, _ := pool("", "version", "-o", "json")
	var v cli.VersionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Program != "prewarm-pool" || v.Version != version {
		t.Errorf("version -o json = %q (%v)", out, err)
	}
	_, out, _ = pool("", "completion", "bash")
	if !strings.Contains(out, "prewarm-pool") {
		t.Errorf("completion bash: %.200q", out)
	}
}

func TestClaimPrintsResultAndSendsRequest(t *testing.T) {
	doc := writeDoc(t, `{"hostname": "web-01"}`)
	var got controller.ClaimRequest
	want := controller.ClaimResult{ClaimID: "c-1", VM: "pw-small-abcdef", Flavor: "small", MAC: "52:54:00:aa:bb:cc", Network: "tenant-a",
		IP: "10.10.1.2", Generation: 2, Path: "warm", Timings: controller.Timings{PickedMS: 1, BouncedMS: 40, ProvisionedMS: 900, TotalMS: 905, AppliedMS: 300}}
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != controller.PathClaims {
			http.Error(w, "wrong route", 404)
			return
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		json.NewEncoder(w).Encode(want)
	}))
	code, out, stderr := pool("", "claim", "small", "--config", doc, "--network", "tenant-a", "--claim-id", "c-1", "--timeout", "5s", "--socket", sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got.Flavor != "small" || got.Network != "tenant-a" || got.ClaimID != "c-1" || got.TimeoutMS != 5000 || string(got.Document) != `{"hostname":"web-01"}` {
		t.Errorf("request = %+v", got)
	}
	for _, w := range []string{"vm                           pw-small-abcdef\n", "52:54:00:aa:bb:cc", "ip                           10.10.1.2\n", "warm", "bounced 40", "provisioned 900", "total 905", "300 ms"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	// --output json: the controller's ClaimResult, the same fields as the
	// API's answer (and as before the move to shared/cli).
	for _, args := range [][]string{{"--output", "json"}, {"-o", "json"}, {"--json"}} {
		code, out, stderr = pool("", append([]string{"claim", "small", "--config", doc, "--socket", sock}, args...)...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		var res controller.ClaimResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || !reflect.DeepEqual(res, want) {
			t.Errorf("%q: %s (%v)", args, out, err)
		}
		api, _ := json.Marshal(want)
		if keys(t, out) != keys(t, string(api)) {
			t.Errorf("%q: keys %s, the API's %s", args, keys(t, out), keys(t, string(api)))
		}
	}

	// --config - reads the document from stdin; --output text is table.
	got = controller.ClaimRequest{}
	if code, out, stderr = pool(`{"hostname": "from-stdin"}`, "claim", "small", "--config", "-", "-o", "text", "--socket", sock); code != 0 || !strings.Contains(out, "pw-small-abcdef") {
		t.Fatalf("--config -: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if string(got.Document) != `{"hostname":"from-stdin"}` {
		t.Errorf("--config -: document %s", got.Document)
	}
}

// keys lists a JSON object's keys, nested objects' as parent.key.
func keys(t *testing.T, s string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	var ks []string
	for k, v := range m {
		ks = append(ks, k)
		if sub, ok := v.(map[string]any); ok {
			for sk := range sub {
				ks = append(ks, k+"."+sk)
			}
		}
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// TestSettingsFromEnvironment: PREWARM_POOL_SOCKET and PREWARM_POOL_OUTPUT
// set the flags, the command line wins over them, and PREWARM_POOL_CONFIG
// (serve's file) is not claim's document.
func TestSettingsFromEnvironment(t *testing.T) {
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(controller.Status{Flavors: []controller.FlavorStatus{{Name: "small", Target: 2, Warm: 1, Booting: 1}},
			VMs: []controller.VMStatus{{Name: "pw-small-2", Flavor: "small", State: "booting", MAC: "52:54:00:00:00:02", Network: "prewarm-pool"},
				{Name: "pw-small-1", Flavor: "small", State: "warm", Path: "warm", MAC: "52:54:00:00:00:01", Network: "prewarm-pool", IP: "10.0.0.5"}}})
	}))
	t.Setenv("PREWARM_POOL_SOCKET", sock)
	code, out, stderr := pool("", "status")
	if code != 0 {
		t.Fatalf("status with PREWARM_POOL_SOCKET: exit %d: %s", code, stderr)
	}
	want := `FLAVOR  TARGET  WARM  BOOTING  CLAIMING  CLAIMED  FAILED  LAST BOOT
small   2       1     1        0         0        0       -

VM          FLAVOR  STATE    PATH  MAC                NETWORK       IP        CLAIM
pw-small-1  small   warm     warm  52:54:00:00:00:01  prewarm-pool  10.0.0.5  -
pw-small-2  small   booting  -     52:54:00:00:00:02  prewarm-pool  -         -
`
	if out != want {
		t.Errorf("status table:\n%s\nwant:\n%s", out, want)
	}
	t.Setenv("PREWARM_POOL_OUTPUT", "json")
	if _, out, _ = pool("", "status"); !strings.HasPrefix(out, "{") {
		t.Errorf("PREWARM_POOL_OUTPUT=json: %q", out)
	}
	if _, out, _ = pool("", "status", "-o", "table"); !strings.HasPrefix(out, "FLAVOR") {
		t.Errorf("-o table over PREWARM_POOL_OUTPUT=json: %q", out)
	}
	if code, _, stderr = pool("", "status", "--socket", filepath.Join(t.TempDir(), "none.sock")); code != cli.ExitUnreachable {
		t.Errorf("--socket over PREWARM_POOL_SOCKET: exit %d (%s), want 5", code, stderr)
	}
	t.Setenv("PREWARM_POOL_CONFIG", writeDoc(t, `{"hostname": "x"}`))
	if code, _, stderr = pool("", "claim", "small"); code != cli.ExitUsage || !strings.Contains(stderr, "claim wants --config DOC.json") {
		t.Errorf("claim with only PREWARM_POOL_CONFIG: exit %d, stderr %q", code, stderr)
	}
}

// TestExitCodes: each kind of controller answer gives its exit code and a
// message saying what failed, with its detail and hint.
func TestExitCodes(t *testing.T) {
	doc := writeDoc(t, `{"hostname": "web-01"}`)
	claim := func(sock string, extra ...string) []string {
		return append([]string{"claim", "small", "--config", doc, "--claim-id", "c-1", "--socket", sock}, extra...)
	}
	for _, tt := range []struct {
		name   string
		h      http.Handler // nil: no controller on the socket
		args   func(sock string) []string
		code   int
		stderr []string
	}{
		{name: "unreachable", args: func(s string) []string { return []string{"status", "--socket", s} }, code: cli.ExitUnreachable,
			stderr: []string{"prewarm-pool: status: cannot reach the pool controller at unix:", "hint: is prewarm-pool serve running? Point at its admin socket with --socket (PREWARM_POOL_SOCKET)"}},
		{name: "claim unreachable", args: func(s string) []string { return claim(s) }, code: cli.ExitUnreachable,
			stderr: []string{"claim small: cannot reach the pool controller"}},
		{name: "starting", h: answer(503, api.Error{Error: "the controller is starting"}), args: func(s string) []string { return []string{"status", "--socket", s} },
			code: cli.ExitUnreachable, stderr: []string{"status: the controller is starting", "hint: the controller is starting or stopping"}},
		{name: "unknown flavor", h: answer(404, api.Error{Error: "unknown flavor", Fields: []api.FieldError{{Path: "flavor", Reason: `no flavor "small" in the pool's config`}}}),
			args: func(s string) []string { return claim(s) }, code: cli.ExitNotFound,
			stderr: []string{"prewarm-pool: claim small: unknown flavor\n  flavor: no flavor \"small\" in the pool's config\nhint: 'prewarm-pool status' lists the flavors"}},
		{name: "unknown VM", h: answer(404, api.Error{Error: "unknown VM", Fields: []api.FieldError{{Path: "vm", Reason: `no VM "pw-x" in the pool`}}}),
			args: func(s string) []string { return []string{"release", "pw-x", "--socket", s} }, code: cli.ExitNotFound,
			stderr: []string{"release pw-x: unknown VM", `vm: no VM "pw-x" in the pool`}},
		{name: "claim timed out", h: answer(504, api.Error{Error: "claim c-1 did not finish within 30s; it goes on: retry with the same claim id to await it"}),
			args: func(s string) []string { return claim(s) }, code: cli.ExitTimeout,
			stderr: []string{"claim small: claim c-1 did not finish within 30s", "hint: the claim goes on in the controller: run the same claim again with the same --claim-id"}},
		{name: "guest failed", h: answer(502, api.Error{Error: "claim c-1 on VM pw-small-0a1b2c: await provisioned: agent failed to apply generation 2: users: create user x: shell /bin/nope does not exist"}),
			args: func(s string) []string { return claim(s) }, code: cli.ExitGuestFailed,
			stderr: []string{"prewarm-pool: claim small: the guest reported failed for generation 2 (claim c-1 on VM pw-small-0a1b2c: await provisioned)\n  error: users: create user x: shell /bin/nope does not exist\nhint: fix the document"}},
		{name: "guest failed, replayed", h: answer(502, api.Error{Error: "claim c-1 failed on VM pw-small-0a1b2c: agent failed to apply generation 2: users: bad (release it and claim with a new id)"}),
			args: func(s string) []string { return claim(s) }, code: cli.ExitGuestFailed,
			stderr: []string{"the guest reported failed for generation 2 (claim c-1 failed on VM pw-small-0a1b2c)\n  error: users: bad\n"}},
		{name: "host step failed", h: answer(502, api.Error{Error: "claim c-1 on VM pw-small-0a1b2c: bounce: link down: no such device"}),
			args: func(s string) []string { return claim(s) }, code: cli.ExitFailure,
			stderr: []string{"claim small: claim c-1 on VM pw-small-0a1b2c: bounce: link down: no such device"}},
		{name: "conflict", h: answer(409, api.Error{Error: "address in use", Fields: []api.FieldError{{Path: "ip", Reason: "10.10.1.2 is leased to 52:54:00:00:00:09"}}}),
			args: func(s string) []string { return claim(s, "--ip", "10.10.1.2") }, code: cli.ExitFailure,
			stderr: []string{"claim small: address in use\n  ip: 10.10.1.2 is leased to 52:54:00:00:00:09\nhint: 'prewarm-pool status' shows"}},
		{name: "invalid document", h: answer(400, api.Error{Error: "invalid document (the IMDS refused it)", Fields: []api.FieldError{{Path: "document.users[0].shell", Reason: "must be absolute"}}}),
			args: func(s string) []string { return claim(s) }, code: cli.ExitFailure,
			stderr: []string{"claim small: invalid document (the IMDS refused it)\n  document.users[0].shell: must be absolute\n"}},
		{name: "no free address", h: answer(503, api.Error{Error: "network tenant-a has no free address in 10.10.1.2-10.10.1.9"}),
			args: func(s string) []string { return claim(s) }, code: cli.ExitFailure, stderr: []string{"hint: release a VM of that network"}},
		{name: "not JSON", h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "proxy says no", 500) }),
			args: func(s string) []string { return []string{"status", "--socket", s} }, code: cli.ExitFailure, stderr: []string{"status: 500 Internal Server Error: proxy says no"}},
		{name: "unreadable document", args: func(s string) []string {
			return []string{"claim", "small", "--config", filepath.Join(t.TempDir(), "none.json"), "--socket", s}
		}, code: cli.ExitFailure, stderr: []string{"cannot read the config document", "no such file or directory"}},
		{name: "document not JSON", args: func(s string) []string {
			return []string{"claim", "small", "--config", writeDoc(t, "hostname: x"), "--socket", s}
		},
			code: cli.ExitFailure, stderr: []string{"is not valid JSON"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "none.sock")
			if tt.h != nil {
				sock = serveUnix(t, tt.h)
			}
			code, out, stderr := pool("", tt.args(sock)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr)
			}
			if out != "" {
				t.Errorf("stdout %q on an error", out)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
			if strings.Contains(stderr, "dial unix") {
				t.Errorf("stderr has the Go error chain: %q", stderr)
			}
		})
	}
}

// TestClaimTimeoutClientSide: a controller that does not answer within
// --timeout (and the grace the CLI adds) is a timeout, exit 4.
func TestClaimTimeoutClientSide(t *testing.T) {
	doc := writeDoc(t, `{}`)
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	code, _, stderr := pool("", "claim", "small", "--config", doc, "--timeout", "1ms", "--socket", sock)
	if code != cli.ExitTimeout || !strings.Contains(stderr, "no answer from the pool controller at "+sock) {
		t.Errorf("exit %d, stderr %q; want 4", code, stderr)
	}
}

func TestRelease(t *testing.T) {
	var method, path string
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path = r.Method, r.URL.Path
		w.WriteHeader(http.StatusNoContent)
	}))
	code, out, stderr := pool("", "release", "pw-small-1", "--socket", sock)
	if code != 0 || out != "released pw-small-1\n" || method != http.MethodDelete || path != controller.PathVMs+"/pw-small-1" {
		t.Errorf("exit %d, stdout %q, stderr %q; request %s %s", code, out, stderr, method, path)
	}
}

// TestCompletion: claim completes the running controller's flavors,
// release its VMs (on --socket or PREWARM_POOL_SOCKET); with no
// controller, nothing (and no file names).
func TestCompletion(t *testing.T) {
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(controller.Status{Flavors: []controller.FlavorStatus{{Name: "small"}, {Name: "large"}},
			VMs: []controller.VMStatus{{Name: "pw-small-1"}, {Name: "pw-large-2"}}})
	}))
	complete := func(args ...string) []string {
		t.Helper()
		code, out, stderr := pool("", append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		return strings.Split(strings.TrimSpace(out), "\n")
	}
	if got := complete("claim", "--socket", sock, ""); strings.Join(got, " ") != "small large :4" {
		t.Errorf("claim: %q", got)
	}
	if got := complete("claim", "small", "--socket", sock, ""); strings.Join(got, " ") != ":4" {
		t.Errorf("claim small: %q, want nothing more", got)
	}
	t.Setenv("PREWARM_POOL_SOCKET", sock)
	if got := complete("release", ""); strings.Join(got, " ") != "pw-small-1 pw-large-2 :4" {
		t.Errorf("release with PREWARM_POOL_SOCKET: %q", got)
	}
	if got := complete("release", "--socket", filepath.Join(t.TempDir(), "none.sock"), ""); strings.Join(got, " ") != ":4" {
		t.Errorf("release with no controller: %q", got)
	}
}
