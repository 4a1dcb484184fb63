package server

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/status"
)

// chromium finds a Chromium to drive: $PREWARM_CHROMIUM, else Debian's
// chromium package (make test-browser installs it), else "".
func chromium() string {
	if p := os.Getenv("PREWARM_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless Chromium for the test; it ends with it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium()
	if exe == "" {
		t.Skip("no Chromium to drive: install Debian's chromium package (make test-browser does) or set PREWARM_CHROMIUM")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root, as the tests run
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	// A bound for the whole browser session, not a timing assertion.
	tctx, tcancel := context.WithTimeout(actx, 3*time.Minute)
	t.Cleanup(tcancel)
	ctx, cancel := chromedp.NewContext(tctx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// The fleet page in a real browser: it renders, an instance moves from
// partial-ready to provisioned on screen after a publish without a
// reload, and HTML-special text (a guest's error, a label) is shown as
// text, never as markup.
func TestFleetPageInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	s := newTestServer(t, Options{})
	const hostile = `<img src=x onerror="window.pwned=1"><b>bold</b> & <script>window.pwned=2</script>`
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	mustRegister(t, s, "vm-2", api.Registration{Addresses: []string{"10.0.0.2"}, Labels: map[string]string{"note": hostile}})
	g := s.GuestHandler()
	mustPublish(t, s, "vm-1", `{"partial":true,"hostname":"warm-1"}`)
	postReport(t, g, "10.0.0.1", status.Report{Seq: 1, Generation: 1, State: status.StatePartialReady})
	mustPublish(t, s, "vm-2", `{"hostname":"b"}`)
	postReport(t, g, "10.0.0.2", status.Report{Seq: 1, Generation: 1, State: status.StateFailed, Error: hostile})

	// The admin API on a loopback TCP listener, as ServeAdmin serves it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeAdmin(ln, "")
	base := "http://" + ln.Addr().String()

	// Wait and read on the page; a failure names the step.
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing assertion
		defer cancel()
		if err := chromedp.Do(wctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	eval := func(expr string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}

	do("load the page",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-instance="vm-1"][data-state="partial-ready"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn.live`)),
	)
	if st := text(`tr[data-instance="vm-1"] td.state`); st != "partial-ready" {
		t.Errorf("vm-1's state shows %q", st)
	}
	// A mark a reload would lose.
	eval(`window.noReload = 42; 0`)

	mustPublish(t, s, "vm-1", `{"hostname":"final-1"}`)
	postReport(t, g, "10.0.0.1", status.Report{Seq: 2, Generation: 2, State: status.StateProvisioned})

	do("after the publish", chromedp.WaitVisible(chromedp.CSS(`tr[data-instance="vm-1"][data-state="provisioned"]`)))
	if st, rep := text(`tr[data-instance="vm-1"] td.state`), text(`tr[data-instance="vm-1"] td.reported`); st != "provisioned" || rep != "2" {
		t.Errorf("vm-1 shows state %q, reported generation %q; want provisioned, 2", st, rep)
	}
	if mark := eval(`window.noReload || 0`); mark != 42 {
		t.Errorf("the page was reloaded (its mark is %d): the update must come without one", mark)
	}
	errText, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`tr[data-instance="vm-2"] td.error`)))
	if err != nil {
		t.Fatal(err)
	}
	label, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(`tr[data-instance="vm-2"] td.identity .label`)))
	if err != nil {
		t.Fatal(err)
	}
	if errText != hostile || label != "note="+hostile {
		t.Errorf("HTML-special text not shown as text:\nerror %q\nlabel %q", errText, label)
	}
	if n := eval(`(window.pwned || 0) + document.querySelectorAll("#fleet img, #fleet b, #fleet script").length`); n != 0 {
		t.Errorf("HTML-special text became markup or ran (%d)", n)
	}
	if c := text(`#conn`); c != "live" {
		t.Errorf("connection indicator %q", c)
	}

	// The instance's page, through its link, with its history; it
	// follows a new report live as well.
	do("the instance page",
		chromedp.Click(chromedp.CSS(`a[href="./instances/vm-1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#history tr[data-seq="2"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn.live`)),
	)
	postReport(t, g, "10.0.0.1", status.Report{Seq: 3, Generation: 2, State: status.StateProvisioned, Event: status.EventDHCPRenewed})
	do("the instance page's update", chromedp.WaitVisible(chromedp.CSS(`#history tr[data-seq="3"]`)))
	if n := eval(`document.querySelectorAll("#history tr[data-seq]").length`); n != 3 {
		t.Errorf("history rows %d, want 3", n)
	}

	// Without JavaScript the page is whole as served, and says it is
	// updated by reloading.
	nctx, ncancel := chromedp.NewContext(ctx)
	defer ncancel()
	noScript := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return chromedp.Void{}, err
	}
	if err := chromedp.Do(nctx,
		noScript,
		chromedp.Navigate(base+"/ui/?state=provisioned"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-instance="vm-1"][data-state="provisioned"]`)),
	); err != nil {
		t.Fatalf("without JavaScript: %v", err)
	}
	c, err := chromedp.Run(nctx, chromedp.Text(chromedp.CSS(`#conn`)))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(nctx, chromedp.Evaluate[int](`document.querySelectorAll("tr[data-instance]").length`))
	if err != nil {
		t.Fatal(err)
	}
	if c != "updated at each reload" || rows != 1 {
		t.Errorf("without JavaScript: indicator %q, %d rows (want 1: the filter)", c, rows)
	}
}

// On the token-guarded TCP listener a browser signs in with the token
// once; the page and its live updates then come with the session cookie.
func TestFleetPageLoginInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	const token = "browser-test-token-of-at-least-32-bytes"
	s := newTestServer(t, Options{})
	mustRegister(t, s, "vm-1", api.Registration{Addresses: []string{"10.0.0.1"}})
	g := s.GuestHandler()
	postReport(t, g, "10.0.0.1", status.Report{Seq: 1, State: status.StateWaiting})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeAdmin(ln, token)
	base := "http://" + ln.Addr().String()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, time.Minute) // a bound, not a timing assertion
		defer cancel()
		if err := chromedp.Do(wctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("a wrong token",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SetValue(chromedp.CSS(`#token`), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-error`)),
	)
	do("the token",
		chromedp.SetValue(chromedp.CSS(`#token`), token),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-instance="vm-1"][data-state="waiting"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn.live`)),
	)
	mustPublish(t, s, "vm-1", `{}`)
	postReport(t, g, "10.0.0.1", status.Report{Seq: 2, Generation: 1, State: status.StateProvisioned})
	do("the live update with the cookie", chromedp.WaitVisible(chromedp.CSS(`tr[data-instance="vm-1"][data-state="provisioned"]`)))
	// The cookie is the page's only: the admin API still wants the token.
	code, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/v1/instances").then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if code != 401 {
		t.Errorf("the admin API from the signed-in page: %d, want 401", code)
	}
}
