package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
	"github.com/prewarm/prewarm/shared/api"
)

// With the etcd store the guest ETag carries the cluster's epoch (the
// P epoch key, the same on every host); a tag of another epoch answers a
// long-poll at once; and after an older state is restored into etcd, a
// guest that saw a later generation makes the next publish, through any
// host, go above it.
func TestEtcdEpochETag(t *testing.T) {
	m := etcdtest.Start(t)
	a := startHost(t, m, "host-a", "127.0.1.1")
	b := startHost(t, m, "host-b", "127.0.2.1")
	const guest = "127.0.1.20"
	if _, err := a.admin.Register(ctx(t), "vm-e", api.Registration{Addresses: []string{guest}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.admin.Publish(ctx(t), "vm-e", []byte(`{"hostname":"three"}`)); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	prefix := "/e2e/" + t.Name() + "/"
	resp, err := cli.Get(ctx(t), prefix+"epoch")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the epoch key: %v, %v", resp, err)
	}
	epoch := string(resp.Kvs[0].Value)
	tag := func(gen int) string { return fmt.Sprintf(`"%d.%s"`, gen, epoch) }
	eventually(t, "ETag of generation 3 with the cluster's epoch", func() bool {
		r, err := a.guestDo(guest, "GET", api.PathConfig, "")
		return err == nil && r.code == 200 && r.hdr.Get("ETag") == tag(3)
	})

	// A tag of another epoch is not current: the long-poll answers at once.
	r, err := a.guestDo(guest, "GET", api.PathConfig+"?wait=true&timeout=25", "", "If-None-Match", `"3.0123456789abcdef"`)
	if err != nil || r.code != 200 || r.hdr.Get("ETag") != tag(3) {
		t.Fatalf("long-poll with another epoch: %+v, %v; want 200 and %s", r, err, tag(3))
	}

	// An older state restored into etcd: generation 1, same epoch.
	doc := `{"instanceId":"vm-e","generation":1,"hostname":"one"}`
	if _, err := cli.Txn(ctx(t)).Then(
		clientv3.OpPut(prefix+"hosts/host-a/configs/vm-e", doc),
		clientv3.OpPut(prefix+"generations/vm-e", "1"),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "host A serving the restored generation 1", func() bool {
		r, err := a.guestDo(guest, "GET", api.PathConfig, "")
		return err == nil && r.code == 200 && r.hdr.Get("ETag") == tag(1)
	})
	// The guest saw generation 3: it is never handed the older document
	// (its tag stays current)...
	r, err = a.guestDo(guest, "GET", api.PathConfig, "", "If-None-Match", tag(3))
	if err != nil || r.code != http.StatusNotModified {
		t.Fatalf("read with the later tag: %+v, %v; want 304", r, err)
	}
	// ...and the next publish, through another host, is numbered above 3
	// and answers its poll.
	gen, err := b.admin.Publish(context.Background(), "vm-e", []byte(`{"hostname":"four"}`))
	if err != nil || gen != 4 {
		t.Fatalf("publish after the restore: generation %d, %v; want 4", gen, err)
	}
	eventually(t, "host A answering the guest's poll with generation 4", func() bool {
		r, err := a.guestDo(guest, "GET", api.PathConfig+"?wait=true&timeout=2", "", "If-None-Match", tag(3))
		return err == nil && r.code == 200 && r.hdr.Get("ETag") == tag(4) && strings.Contains(r.body, `"hostname":"four"`)
	})
}
