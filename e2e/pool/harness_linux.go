package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/e2e/virtlab"
	"github.com/prewarm/prewarm/pool/controller"
)

// Flavor is the flavor the harness keeps warm; ColdFlavor (Options.ColdFlavor)
// is the same VM with no warm target.
const (
	Flavor     = "small"
	ColdFlavor = "small-cold"
)

// The networks of the harness's config (isolated libvirt networks).
const (
	PoolNet    = "prewarm-pool"
	TenantA    = "tenant-a"
	TenantB    = "tenant-b"
	poolCIDR   = "10.254.0.0/24"
	tenantACID = "10.10.1.0/24"
	tenantBCID = "10.10.2.0/24"
)

// Binaries are the programs under test.
type Binaries struct{ IMDS, Pool string }

var (
	binsOnce sync.Once
	bins     Binaries
	binsErr  error
)

// BuildBinaries builds prewarm-imds and prewarm-pool once (static), or
// takes them from $PREWARM_BIN.
func BuildBinaries() (Binaries, error) {
	binsOnce.Do(func() {
		if d := os.Getenv("PREWARM_BIN"); d != "" {
			bins = Binaries{IMDS: filepath.Join(d, "prewarm-imds"), Pool: filepath.Join(d, "prewarm-pool")}
			for _, p := range []string{bins.IMDS, bins.Pool} {
				if _, err := os.Stat(p); err != nil {
					binsErr = fmt.Errorf("PREWARM_BIN: %w", err)
				}
			}
			return
		}
		dir, err := os.MkdirTemp("", "pwp-bin-")
		if err != nil {
			binsErr = err
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/",
			"github.com/prewarm/prewarm/imds/cmd/prewarm-imds", "github.com/prewarm/prewarm/pool/cmd/prewarm-pool")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binsErr = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		bins = Binaries{IMDS: filepath.Join(dir, "prewarm-imds"), Pool: filepath.Join(dir, "prewarm-pool")}
	})
	return bins, binsErr
}

// Options shape a harness.
type Options struct {
	// Warm is the flavor's target of warm VMs (default 2).
	Warm int
	// MaxBoots caps concurrent boots (default 2: this machine's cores).
	MaxBoots int
	// MemoryMiB of each VM (default 512).
	MemoryMiB int
	// ColdFlavor adds a second flavor, ColdFlavor, like Flavor but with no
	// warm VMs: each of its claims boots cold (the benchmark's baseline).
	ColdFlavor bool
	// Log receives the harness's narration (nil: none).
	Log func(format string, args ...any)
}

// Harness is one lab with prewarm-pool serving in it.
type Harness struct {
	Lab    *virtlab.Lab
	Bins   Binaries
	Config string // the pool config file
	Socket string // prewarm-pool's admin socket
	// Key is an SSH key pair for the documents' users: Key (private) and
	// Key+".pub".
	Key string

	log    func(format string, args ...any)
	mu     sync.Mutex
	serve  *exec.Cmd
	served chan struct{}
	began  time.Time
	steps  []string // what Step recorded, for the summary of a failure
}

// Step records (and narrates) the phase a test enters; a failed test's
// summary names the steps and when each began, so the phase that failed
// shows even when only the end of the output is kept.
func (h *Harness) Step(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	h.mu.Lock()
	h.steps = append(h.steps, fmt.Sprintf("%s +%v %s", time.Now().UTC().Format("15:04:05.000"), time.Since(h.began).Round(time.Millisecond), s))
	h.mu.Unlock()
	h.log("step: %s", s)
}

// Summary is what a failed test prints last: its steps and the
// controller's warnings and errors (the last 25).
func (h *Harness) Summary() string {
	h.mu.Lock()
	steps := append([]string(nil), h.steps...)
	h.mu.Unlock()
	var b strings.Builder
	b.WriteString("---- summary: the test's steps (the failure is in the last) ----\n")
	for _, s := range steps {
		b.WriteString("  " + s + "\n")
	}
	data, _ := os.ReadFile(filepath.Join(h.Lab.Dir, "pool.log"))
	bad := lastLines(string(data), 25, func(l string) bool {
		return strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "rolling")
	})
	b.WriteString("---- summary: the controller's warnings, errors and roll-backs/forwards ----\n")
	for _, l := range bad {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// New starts a lab (libvirtd, virtlogd, prewarm-imds) and writes the pool
// config; Serve starts the controller. Stop tears everything down.
func New(o Options) (*Harness, error) {
	if o.Warm == 0 {
		o.Warm = 2
	}
	if o.MaxBoots == 0 {
		o.MaxBoots = 2
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 512
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	im, err := virtlab.FindImage()
	if err != nil {
		return nil, fmt.Errorf("no golden image in %s (make image builds it): %w", virtlab.ImageDir(), err)
	}
	b, err := BuildBinaries()
	if err != nil {
		return nil, err
	}
	lab, err := virtlab.StartManual(virtlab.Options{IMDS: b.IMDS})
	if err != nil {
		return nil, err
	}
	h := &Harness{Lab: lab, Bins: b, Socket: filepath.Join(lab.Dir, "pool.sock"), log: o.Log, began: time.Now(),
		Config: filepath.Join(lab.Dir, "pool.json"), Key: filepath.Join(lab.Dir, "id_ed25519")}
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e@prewarm", "-f", h.Key).CombinedOutput(); err != nil {
		h.Stop()
		return nil, fmt.Errorf("ssh-keygen: %w: %s", err, out)
	}
	cfg := map[string]any{
		"libvirt":       lab.LibvirtSocket,
		"imdsAdmin":     lab.IMDSSocket,
		"socket":        h.Socket,
		"domainType":    "qemu",
		"storagePool":   "prewarm",
		"overlayDir":    filepath.Join(lab.Dir, "overlays"),
		"consoleLogDir": filepath.Join(lab.Dir, "console"),
		"maxBoots":      o.MaxBoots,
		"bootTimeout":   "300s",
		"claimTimeout":  "240s",
		"networks": []map[string]string{
			{"name": PoolNet, "bridge": "pwpool0", "cidr": poolCIDR},
			{"name": TenantA, "bridge": "pwta0", "cidr": tenantACID},
			{"name": TenantB, "bridge": "pwtb0", "cidr": tenantBCID},
		},
	}
	flavor := func(name string, warm int) map[string]any {
		return map[string]any{
			"name": name, "vcpus": 1, "memoryMiB": o.MemoryMiB, "poolNetwork": PoolNet, "tenantNetwork": TenantA,
			"warm":  warm,
			"image": map[string]string{"disk": im.Disk, "kernel": im.Kernel, "initrd": im.Initrd, "cmdline": im.Cmdline},
		}
	}
	flavors := []map[string]any{flavor(Flavor, o.Warm)}
	if o.ColdFlavor {
		flavors = append(flavors, flavor(ColdFlavor, 0))
	}
	cfg["flavors"] = flavors
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(h.Config, data, 0o644); err != nil {
		h.Stop()
		return nil, err
	}
	return h, nil
}

// NewT is New for a test: it skips without root, libvirt or the image,
// and stops the harness at cleanup (dumping the logs if the test failed).
func NewT(t *testing.T, o Options) *Harness {
	t.Helper()
	virtlab.Require(t)
	virtlab.RequireImage(t)
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("e2e/pool: ssh (openssh-client) not installed")
	}
	if o.Log == nil {
		o.Log = t.Logf
	}
	h, err := New(o)
	if err != nil {
		t.Fatalf("e2e/pool: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			h.DumpLogs(t.Logf)
		}
		h.Stop()
		if t.Failed() {
			t.Log(h.Summary())
		}
		if t.Failed() && os.Getenv("KEEP") == "1" {
			t.Logf("kept %s", h.Lab.Dir)
			return
		}
		os.RemoveAll(h.Lab.Dir)
	})
	return h
}

// Serve starts `prewarm-pool serve` in the lab's network namespace (its
// output appended to pool.log) and waits until its socket answers.
func (h *Harness) Serve(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.serve != nil {
		return errors.New("prewarm-pool serve is already running")
	}
	f, err := os.OpenFile(filepath.Join(h.Lab.Dir, "pool.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := h.Lab.Command(context.Background(), h.Bins.Pool, "serve", "--config", h.Config)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start prewarm-pool serve: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	h.serve, h.served = cmd, done
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 250*time.Millisecond) {
		if _, err := h.Status(ctx); err == nil {
			return nil
		}
		select {
		case <-done:
			h.serve = nil
			return fmt.Errorf("prewarm-pool serve exited: %v (see %s)", cmd.ProcessState, filepath.Join(h.Lab.Dir, "pool.log"))
		case <-ctx.Done():
			return fmt.Errorf("prewarm-pool serve: socket not answering: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}

// ServePID is the controller's PID (0 when it is not running).
func (h *Harness) ServePID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.serve == nil {
		return 0
	}
	return h.serve.Process.Pid
}

// KillServe stops the controller with sig (SIGKILL: no cleanup at all)
// and waits for it to exit.
func (h *Harness) KillServe(sig syscall.Signal) error {
	h.mu.Lock()
	cmd, done := h.serve, h.served
	h.serve = nil
	h.mu.Unlock()
	if cmd == nil {
		return errors.New("prewarm-pool serve is not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("prewarm-pool serve did not exit within 30s of %v", sig)
	}
}

// Stop stops the controller and the lab (every VM dies with it).
func (h *Harness) Stop() {
	if h.ServePID() != 0 {
		h.KillServe(syscall.SIGTERM)
	}
	h.Lab.Stop()
}

// Pool runs a prewarm-pool client command against the harness's socket.
func (h *Harness) Pool(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--socket", h.Socket)
	cmd := exec.CommandContext(ctx, h.Bins.Pool, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("prewarm-pool %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Status is `prewarm-pool status --output json`.
func (h *Harness) Status(ctx context.Context) (controller.Status, error) {
	var st controller.Status
	out, err := h.Pool(ctx, "status", "--output", "json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status output: %w: %q", err, out)
	}
	return st, nil
}

// FlavorStatus picks the harness flavor's line out of st.
func FlavorStatus(st controller.Status) controller.FlavorStatus {
	return FlavorStatusOf(st, Flavor)
}

// FlavorStatusOf picks flavor's line out of st.
func FlavorStatusOf(st controller.Status, flavor string) controller.FlavorStatus {
	for _, f := range st.Flavors {
		if f.Name == flavor {
			return f
		}
	}
	return controller.FlavorStatus{}
}

// WaitStatus polls the controller's status (every 250 ms: the controller
// has no status long-poll) until ok accepts it.
func (h *Harness) WaitStatus(ctx context.Context, what string, ok func(controller.Status) bool) (controller.Status, error) {
	var last controller.Status
	var lastErr error
	for {
		st, err := h.Status(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		if err == nil {
			last = st
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			f := FlavorStatus(last)
			return last, fmt.Errorf("waiting for %s: %w (last: warm %d booting %d claiming %d claimed %d failed %d; last error %v)",
				what, ctx.Err(), f.Warm, f.Booting, f.Claiming, f.Claimed, f.Failed, lastErr)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// WaitWarm waits until the flavor has n warm VMs.
func (h *Harness) WaitWarm(ctx context.Context, n int) (controller.Status, error) {
	return h.WaitStatus(ctx, fmt.Sprintf("%d warm VMs", n), func(st controller.Status) bool {
		return FlavorStatus(st).Warm >= n
	})
}

// Claim is `prewarm-pool claim FLAVOR --config DOC --output json` with
// extra flags (--network, --claim-id, --ip, --timeout).
func (h *Harness) Claim(ctx context.Context, doc any, flags ...string) (controller.ClaimResult, error) {
	return h.ClaimFlavor(ctx, Flavor, doc, flags...)
}

// ClaimFlavor is Claim of another flavor.
func (h *Harness) ClaimFlavor(ctx context.Context, flavor string, doc any, flags ...string) (controller.ClaimResult, error) {
	var res controller.ClaimResult
	data, err := json.Marshal(doc)
	if err != nil {
		return res, err
	}
	f, err := os.CreateTemp(h.Lab.Dir, "doc-*.json")
	if err != nil {
		return res, err
	}
	f.Write(data)
	f.Close()
	defer os.Remove(f.Name())
	args := append([]string{"claim", flavor, "--config", f.Name(), "--output", "json"}, flags...)
	out, err := h.Pool(ctx, args...)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return res, fmt.Errorf("claim output: %w: %q", err, out)
	}
	return res, nil
}

// Quiet reports whether nothing boots or claims and the flavor has its
// target of warm VMs: the state a benchmark's claim starts from.
func Quiet(st controller.Status, warm int) bool {
	for _, f := range st.Flavors {
		if f.Booting > 0 || f.Claiming > 0 {
			return false
		}
	}
	return FlavorStatus(st).Warm >= warm
}

// RepoRoot is the repository holding the current directory.
func RepoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return wd
}

// PubKey is the public half of Key.
func (h *Harness) PubKey() string {
	b, _ := os.ReadFile(h.Key + ".pub")
	return strings.TrimSpace(string(b))
}

// SSH runs a shell command in a guest as user, over SSH from the lab's
// network namespace with Key.
func (h *Harness) SSH(ctx context.Context, user, ip, command string) (string, error) {
	cmd := h.Lab.Command(ctx, "ssh", "-i", h.Key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", user+"@"+ip, command)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ssh %s@%s %q: %w: %s", user, ip, command, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// HostKey is the guest's SSH ed25519 host key, read with ssh-keyscan from
// the lab's namespace.
func (h *Harness) HostKey(ctx context.Context, ip string) (string, error) {
	out, err := h.Lab.Command(ctx, "ssh-keyscan", "-T", "10", "-t", "ed25519", ip).Output()
	if err != nil {
		return "", fmt.Errorf("ssh-keyscan %s: %w", ip, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[1] == "ssh-ed25519" {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("ssh-keyscan %s: no ed25519 key in %q", ip, out)
}

// Console is the serial console log of vm.
func (h *Harness) Console(vm string) string {
	b, _ := os.ReadFile(filepath.Join(h.Lab.Dir, "console", vm+".log"))
	return string(b)
}

// ConsoleTail is the last n lines of Console.
func (h *Harness) ConsoleTail(vm string, n int) string {
	return strings.Join(lastLines(h.Console(vm), n, nil), "\n")
}

// lastLines is the last n lines of text that keep accepts (nil: all).
func lastLines(text string, n int, keep func(string) bool) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if keep == nil || keep(l) {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// DumpLogs logs the tails of libvirtd's, the IMDS's and the controller's
// logs, the controller's last (the end of a CI excerpt).
func (h *Harness) DumpLogs(logf func(string, ...any)) {
	for _, name := range []string{"log/libvirtd.log", "imds.log", "pool.log"} {
		b, err := os.ReadFile(filepath.Join(h.Lab.Dir, name))
		if err != nil || len(b) == 0 {
			continue
		}
		keep := lastLines(string(b), 60, func(l string) bool { return !strings.Contains(l, "ethtool ioctl error") })
		logf("---- last %d lines of %s ----\n%s", len(keep), name, strings.Join(keep, "\n"))
	}
}

// guestCPU is the CPU the lab's QEMU processes used together over window,
// in percent of one core (read from /proc/PID/stat).
func (h *Harness) guestCPU(window time.Duration) float64 {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.Lab.PID))
	if err != nil {
		return 0
	}
	ticks := func() map[string]int64 {
		out := map[string]int64{}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if n, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err != nil || n != ns {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil || !strings.Contains(string(b), "(qemu-system") {
				continue
			}
			// Fields after the command's closing parenthesis: utime and
			// stime are the 12th and 13th.
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
			if len(f) > 12 {
				var u, s int64
				fmt.Sscan(f[11], &u)
				fmt.Sscan(f[12], &s)
				out[e.Name()] = u + s
			}
		}
		return out
	}
	before := ticks()
	time.Sleep(window)
	var used int64
	for pid, t := range ticks() {
		used += t - before[pid]
	}
	// USER_HZ is 100: a tick is 10 ms, so ticks per second are percent.
	return float64(used) / window.Seconds()
}

// Settle waits until the lab's guests together use less than pct percent of
// one core over a second (a VM keeps booting for a while after it reports
// partial-ready), at most limit; it returns how long it waited and the last
// reading.
func (h *Harness) Settle(ctx context.Context, pct float64, limit time.Duration) (time.Duration, float64) {
	start := time.Now()
	for {
		c := h.guestCPU(time.Second)
		if c < pct || time.Since(start) > limit || ctx.Err() != nil {
			return time.Since(start), c
		}
	}
}
