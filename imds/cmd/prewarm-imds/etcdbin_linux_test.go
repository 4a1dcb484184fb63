package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prewarm/prewarm/imds/store/etcdstore"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
)

// The lean prewarm-imds keeps etcdstore's default prefix without linking
// it.
func TestEtcdPrefixDefaultMatchesEtcdstore(t *testing.T) {
	if defaultEtcdPrefix != etcdstore.DefaultPrefix {
		t.Fatalf("defaultEtcdPrefix %q, etcdstore.DefaultPrefix %q", defaultEtcdPrefix, etcdstore.DefaultPrefix)
	}
}

// The lean binary links no etcd client, gRPC or etcd API.
func TestLeanBinaryLinksNoEtcdClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "go.etcd.io/etcd/") || strings.HasPrefix(p, "google.golang.org/grpc") || strings.HasSuffix(p, "/imds/store/etcdstore") {
			t.Errorf("prewarm-imds (no etcd tag) links %s", p)
		}
	}
}

// serve --store etcd hands the process over to prewarm-imds-etcd: the
// same pid, same arguments, now running the etcd binary, serving from
// etcd.
func TestServeStoreEtcdExecsEtcdBinary(t *testing.T) {
	m := etcdtest.Start(t)
	p := startHost(t, m, "hv-exec", "127.0.0.1")
	exe, err := os.Readlink("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(binPath), etcdBinary); exe != want {
		t.Fatalf("pid %d runs %s, want %s", p.cmd.Process.Pid, exe, want)
	}
	p.mustCLI("", "register", "vm-exec", "--address", "127.0.0.9")
	if gen := strings.TrimSpace(p.mustCLI(`{"hostname": "h"}`, "publish", "vm-exec", "-")); gen != "1" {
		t.Fatalf("publish: generation %q, want 1", gen)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx(t), "/e2e/"+t.Name()+"/placement/vm-exec")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "hv-exec" {
		t.Fatalf("etcd placement/vm-exec: %v, want hv-exec", resp.Kvs)
	}
}

// Without prewarm-imds-etcd beside it or on $PATH, serve --store etcd
// fails at once, naming the missing binary and how to get it; bolt is
// unaffected.
func TestServeStoreEtcdWithoutEtcdBinary(t *testing.T) {
	dir := t.TempDir()
	lone := filepath.Join(dir, "prewarm-imds")
	if err := os.Link(binPath, lone); err != nil {
		b, rerr := os.ReadFile(binPath)
		if rerr != nil {
			t.Fatal(err, rerr)
		}
		if err := os.WriteFile(lone, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(lone, "serve", "--listen", "", "--admin-socket", filepath.Join(dir, "a.sock"), "--data-dir", filepath.Join(dir, "data"),
		"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1", "--host-id", "hv-1")
	cmd.Env = []string{"PATH=" + filepath.Join(dir, "nothing-here")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("serve --store etcd without %s: %v, want exit 1; stderr:\n%s", etcdBinary, err, stderr.String())
	}
	for _, want := range []string{etcdBinary + ", which is missing", filepath.Join(dir, etcdBinary), "make build"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Errorf("the failed serve created its data dir")
	}
}
