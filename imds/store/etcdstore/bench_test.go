package etcdstore_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/imds/store/etcdstore"
	"github.com/prewarm/prewarm/imds/store/etcdstore/etcdtest"
)

// TestBenchFanout measures, against one real etcd, how long a publish
// through one host takes to reach the follower of the host serving the
// instance (p50/p99), and how many publishes per second one etcd sustains,
// with N hosts following (each watches only its own instances).
// It runs only with PREWARM_ETCD_BENCH=1 (numbers in docs/etcd.md).
func TestBenchFanout(t *testing.T) {
	if os.Getenv("PREWARM_ETCD_BENCH") != "1" {
		t.Skip("set PREWARM_ETCD_BENCH=1 to run the etcd fan-out benchmark")
	}
	m := etcdtest.Start(t)
	for _, hosts := range []int{1, 10, 100} {
		t.Run(fmt.Sprintf("hosts=%d", hosts), func(t *testing.T) { benchFanout(t, m, hosts) })
	}
}

func benchFanout(t *testing.T, m *etcdtest.Member, hosts int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{m.ClientURL}, Prefix: "/bench/" + t.Name(), HostID: "publisher"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// Host 0 owns the measured instance; the others follow everything.
	type seen struct {
		gen int64
		at  time.Time
	}
	arrivals := make(chan seen, 4096)
	var delivered atomic.Int64
	var wg sync.WaitGroup
	stores := make([]*etcdstore.Store, hosts)
	for h := range hosts {
		st, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{m.ClientURL}, Prefix: "/bench/" + t.Name(), HostID: "host-" + strconv.Itoa(h)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stores[h] = st
		if h == 0 {
			if _, err := st.Apply(ctx, "vm-0", store.Change{Register: reg("10.9.0.1")}); err != nil {
				t.Fatal(err)
			}
		}
		ready := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			st.Follow(ctx, 0, func(ev etcdstore.Event) {
				switch ev.Type {
				case etcdstore.EventResync:
					once.Do(func() { close(ready) })
				case etcdstore.EventChanged:
					delivered.Add(1)
					if h == 0 && ev.ID == "vm-0" {
						arrivals <- seen{ev.Instance.Generation, time.Now()}
					}
				}
			})
		}()
		<-ready
	}
	// Latency: one publish at a time through the publisher, received by
	// host 0's follower.
	const n = 300
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		rec, err := pub.Apply(ctx, "vm-0", store.Change{Publish: stamp("bench")})
		if err != nil {
			t.Fatal(err)
		}
		for s := range arrivals {
			if s.gen == rec.Generation {
				lat = append(lat, s.at.Sub(start))
				break
			}
		}
	}
	slices.Sort(lat)
	// Throughput: 16 publishers on 16 instances spread over the hosts,
	// for 3 s.
	for i := range 16 {
		if _, err := stores[i%hosts].Apply(ctx, fmt.Sprintf("tp-%d", i), store.Change{Register: reg(fmt.Sprintf("10.9.1.%d", i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	var done atomic.Int64
	end := time.Now().Add(3 * time.Second)
	var pw sync.WaitGroup
	for i := range 16 {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for time.Now().Before(end) {
				if _, err := pub.Apply(ctx, fmt.Sprintf("tp-%d", i), store.Change{Publish: stamp("tp")}); err != nil {
					t.Error(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	pw.Wait()
	t.Logf("hosts=%d publish→follower p50=%v p99=%v max=%v; %d publishes/s sustained (16 publishers), %d events delivered in all",
		hosts, lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond),
		done.Load()/3, delivered.Load())
	cancel()
	wg.Wait()
}
