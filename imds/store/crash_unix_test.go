//go:build unix

package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// crashChildEnv makes the test binary the crash test's child: it works on
// the store in the directory named until it is killed.
const crashChildEnv = "PREWARM_STORE_CRASH_CHILD"

var crashIDs = []string{"c0", "c1", "c2", "c3", "c4", "c5"}

// TestMain runs the crash child instead of the tests when asked to.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild appends reports to every instance (one goroutine each, so
// that an instance's reports commit in the order of their Seq), deletes
// and re-registers instances, and publishes, with sweeps and reopens of
// reports.db made frequent, until the parent kills it (bounded anyway).
// Each incarnation of an instance has a label "inc" unique to it, which
// every report of it carries as AgentVersion. It prints "pub <id> <gen>"
// for each publish that returned (durable) and "op" lines as it goes.
func crashChild(dir string) {
	minSweepDead, maxSweepDeletes, maxSweepVisit = 64, 40, 300
	remapBytes = 32 << 10
	s, err := OpenBolt(dir)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		fmt.Printf(format+"\n", a...)
		out.Unlock()
	}
	// inc[id] is the current incarnation; locks[id] keeps a report from
	// being stamped with the incarnation a re-registration is replacing
	// (reports still race the Delete itself).
	var incMu sync.Mutex
	inc := map[string]string{}
	locks := map[string]*sync.RWMutex{}
	recs, err := s.Load(ctx)
	if err != nil {
		say("load: %v", err)
		os.Exit(2)
	}
	for _, r := range recs {
		inc[r.ID] = r.Labels["inc"]
	}
	register := func(i int, id string) {
		n := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + id
		if _, err := s.Apply(ctx, id, Change{Register: &Registration{Addresses: []string{fmt.Sprintf("10.9.0.%d", i+1)}, Labels: map[string]string{"inc": n}}}); err != nil {
			say("register: %v", err)
			os.Exit(2)
		}
		incMu.Lock()
		inc[id] = n
		incMu.Unlock()
	}
	for i, id := range crashIDs {
		locks[id] = &sync.RWMutex{}
		if inc[id] == "" {
			register(i, id)
		}
	}
	var seq uint64 = uint64(time.Now().UnixNano())
	var seqMu sync.Mutex
	for i, id := range crashIDs {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(i), seq))
			for range 1_000_000 {
				seqMu.Lock()
				seq++
				n := seq
				seqMu.Unlock()
				locks[id].RLock()
				incMu.Lock()
				r := tinyReport(n)
				r.AgentVersion = inc[id]
				incMu.Unlock()
				if rng.IntN(40) == 0 {
					r.State, r.Error = status.StateFailed, strings.Repeat("e", 20000+rng.IntN(40000))
				}
				err := s.AppendStatus(ctx, id, r)
				locks[id].RUnlock()
				if err != nil && !errors.Is(err, ErrNotFound) {
					say("append: %v", err)
					os.Exit(2)
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(seq, 7))
	for k := range 100_000 {
		i := rng.IntN(len(crashIDs))
		id := crashIDs[i]
		switch rng.IntN(15) {
		case 0:
			if err := s.Delete(ctx, id); err != nil {
				say("delete: %v", err)
				os.Exit(2)
			}
			locks[id].Lock()
			register(i, id)
			locks[id].Unlock()
		default:
			rec, err := s.Apply(ctx, id, Change{Publish: stamp(`"hostname":"h"`)})
			if err != nil {
				say("publish: %v", err)
				os.Exit(2)
			}
			say("pub %s %d", id, rec.Generation)
		}
		say("op %d", k)
		time.Sleep(3 * time.Millisecond)
	}
	say("done")
	select {} // the parent kills it
}

// The store survives a SIGKILL at any point: a child process appends,
// deletes, re-registers and publishes until it is killed, three times on
// one data dir; after each kill both files check healthy, the store
// opens, every history is within its bounds and in order and holds only
// reports of the instance's current incarnation, and a publish gets a
// generation above every one the killed process published.
func TestBoltSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: -short")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	maxGen := map[string]int64{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 100 + rng.IntN(400)
		sc := bufio.NewScanner(stdout)
		ops := 0
		for ops < killAt && sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "pub":
				g, _ := strconv.ParseInt(f[2], 10, 64)
				maxGen[f[1]] = max(maxGen[f[1]], g)
			case len(f) == 2 && f[0] == "op":
				ops++
			default:
				cmd.Process.Kill()
				cmd.Wait()
				cancel()
				t.Fatalf("round %d: child said %q", round, sc.Text())
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		cancel()
		if ops < killAt {
			t.Fatalf("round %d: the child ended after %d ops", round, ops)
		}
		t.Logf("round %d: killed after %d ops", round, ops)
		if _, err := CheckBolt(dir); err != nil {
			t.Fatalf("round %d: check after the kill: %v", round, err)
		}
		checkCrashedStore(t, round, dir, maxGen)
	}
}

func checkCrashedStore(t *testing.T, round int, dir string, maxGen map[string]int64) {
	t.Helper()
	ctx := context.Background()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatalf("round %d: open after the kill: %v", round, err)
	}
	defer s.Close()
	recs, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("round %d: load: %v", round, err)
	}
	if len(recs) != len(crashIDs) {
		t.Fatalf("round %d: %d instances, want %d", round, len(recs), len(crashIDs))
	}
	kept := 0
	defer func() { t.Logf("round %d: %d reports kept, %d records in the log", round, kept, logKeys(t, s)) }()
	for _, rec := range recs {
		inc := rec.Labels["inc"]
		h, err := s.StatusHistory(ctx, rec.ID)
		if err != nil {
			t.Fatalf("round %d: history of %s: %v", round, rec.ID, err)
		}
		kept += len(h)
		if len(h) > MaxStatusHistory {
			t.Fatalf("round %d: %s has %d reports, more than %d", round, rec.ID, len(h), MaxStatusHistory)
		}
		bytes := 0
		for i, r := range h {
			if r.AgentVersion != inc {
				t.Fatalf("round %d: %s (incarnation %s) holds report %d of incarnation %s", round, rec.ID, inc, r.Seq, r.AgentVersion)
			}
			if i > 0 && r.Seq <= h[i-1].Seq {
				t.Fatalf("round %d: %s's history out of order: %d after %d", round, rec.ID, r.Seq, h[i-1].Seq)
			}
			data, _ := EncodeReport(r)
			bytes += len(data)
		}
		if len(h) > 1 && bytes > MaxStatusHistoryBytes {
			t.Fatalf("round %d: %s's history holds %d bytes, more than %d", round, rec.ID, bytes, MaxStatusHistoryBytes)
		}
		switch {
		case len(h) == 0 && rec.LastStatus != nil:
			t.Fatalf("round %d: %s has a last status %d and no history", round, rec.ID, rec.LastStatus.Seq)
		case len(h) > 0 && (rec.LastStatus == nil || rec.LastStatus.Seq != h[len(h)-1].Seq):
			t.Fatalf("round %d: %s's last status %+v is not its newest report %d", round, rec.ID, rec.LastStatus, h[len(h)-1].Seq)
		}
		got, err := s.Apply(ctx, rec.ID, Change{Publish: stamp(`"hostname":"p"`)})
		if err != nil {
			t.Fatal(err)
		}
		if got.Generation <= maxGen[rec.ID] {
			t.Fatalf("round %d: %s published at generation %d, the killed process reached %d", round, rec.ID, got.Generation, maxGen[rec.ID])
		}
		maxGen[rec.ID] = got.Generation
	}
}
