package etcdstore_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
)

// TestDocumentedEtcdctlPublish runs the etcdctl example of docs/etcd.md,
// with the revisions of the moment, as a control plane would: the
// instance's host gets the document with the generation it chose, and the
// store continues the counter.
func TestDocumentedEtcdctlPublish(t *testing.T) {
	etcdctl, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Skip("etcdctl not installed (apt-get install etcd-client); skipping the documented example")
	}
	md, err := os.ReadFile("../../../docs/etcd.md")
	if err != nil {
		t.Fatal(err)
	}
	script, ok := between(string(md), "etcdctl txn <<'EOF'\n", "\nEOF\n")
	if !ok {
		t.Fatal("no etcdctl txn example in docs/etcd.md")
	}
	m := etcdtest.Start(t)
	ctx := context.Background()
	h := open(t, []string{m.ClientURL}, "hv-7")
	if _, err := h.Apply(ctx, "vm-3", store.Change{Register: reg("10.0.0.3")}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := h.Apply(ctx, "vm-3", store.Change{Publish: stamp("x")}); err != nil {
			t.Fatal(err)
		}
	}
	// The example has no config yet (mod revision 0); remove ours.
	p := h.Prefix()
	if _, err := h.Client().Delete(ctx, p+"hosts/hv-7/configs/vm-3"); err != nil {
		t.Fatal(err)
	}
	modRev := func(k string) string {
		resp, err := h.Client().Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return "0"
		}
		return strconv.FormatInt(resp.Kvs[0].ModRevision, 10)
	}
	// Substitute the moment's revisions and the test's prefix.
	revs := map[string]string{}
	for _, k := range []string{"placement/vm-3", "hosts/hv-7/configs/vm-3", "generations/vm-3"} {
		revs["/prewarm/"+k] = modRev(p + k)
	}
	script = regexp.MustCompile(`mod\("([^"]+)"\) = "\d+"`).ReplaceAllStringFunc(script, func(s string) string {
		k := regexp.MustCompile(`"([^"]+)"`).FindStringSubmatch(s)[1]
		return `mod("` + k + `") = "` + revs[k] + `"`
	})
	script = strings.ReplaceAll(script, "/prewarm/", p)
	cmd := exec.Command(etcdctl, "--endpoints", m.ClientURL, "txn")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(script + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "SUCCESS") {
		t.Fatalf("etcdctl txn: %v\n%s\nscript:\n%s", err, out, script)
	}
	recs, err := h.Load(ctx)
	if err != nil || len(recs) != 1 || recs[0].Generation != 3 || !strings.Contains(string(recs[0].Config), `"hostname":"pool-7"`) {
		t.Fatalf("after the documented publish: %+v, %v", recs, err)
	}
	rec, err := h.Apply(ctx, "vm-3", store.Change{Publish: stamp("next")})
	if err != nil || rec.Generation != 4 {
		t.Fatalf("publish after the control plane's: %+v, %v", rec, err)
	}
}

func between(s, start, end string) (string, bool) {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return "", false
	}
	body, _, ok := strings.Cut(rest, end)
	return body, ok
}
