package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prewarm/prewarm/shared/status"
)

// mappedKB is the resident size (smaps Rss, kB) of this process's
// mappings of the file at path.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == path
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			kb, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += kb
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// A status history read, Load and a publish leave no pages of reports.db
// mapped: each history is 256 records spread over the whole log,
// and the store's reads would otherwise keep all they touched (plus the
// kernel's fault-around) in the process's RSS until the file is reopened.
// The data read stays right: the pages come back from the page cache.
func TestReadsLeaveNoMappedPages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	ids := registeredIDs(t, s, 16)
	// 16 guests × 256 reports of ~1 KB, appended at once so that each
	// history is spread over the log (below remapBytes: no reopen).
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uint64(MaxStatusHistory) {
				r := tinyReport(i + 1)
				r.State, r.Error = status.StateFailed, strings.Repeat("e", 900)
				if err := s.AppendStatus(ctx, id, r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	reports := filepath.Join(dir, "reports.db")

	h, err := s.StatusHistory(ctx, ids[3])
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != MaxStatusHistory || h[0].Error != strings.Repeat("e", 900) {
		t.Fatalf("history of %s: %d reports, first %+v", ids[3], len(h), h[0])
	}
	for i := 1; i < len(h); i++ {
		if h[i].Seq <= h[i-1].Seq {
			t.Fatalf("history out of order at %d: %d after %d", i, h[i].Seq, h[i-1].Seq)
		}
	}
	// A history spans ~4 MB of log; mapped it would be a MB or more.
	if kb := mappedKB(t, reports); kb > 64 {
		t.Errorf("reports.db: %d kB mapped after a history read, want the pages let go", kb)
	}

	recs, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(ids) || recs[0].LastStatus == nil {
		t.Fatalf("load: %d records, first %+v", len(recs), recs[0])
	}
	if _, err := s.Apply(ctx, ids[0], Change{Publish: stamp(`"hostname":"a"`)}); err != nil {
		t.Fatal(err)
	}
	// Load reads each id's last report from reports.db. (imds.db is
	// smaller here than the kernel maps around one fault: the next test
	// checks it on a larger file.)
	if kb := mappedKB(t, reports); kb > 64 {
		t.Errorf("reports.db: %d kB mapped after Load and a publish, want the pages let go", kb)
	}
	// Read again: the same reports, from the page cache.
	h2, err := s.StatusHistory(ctx, ids[3])
	if err != nil || len(h2) != len(h) || h2[255].Seq != h[255].Seq || h2[0].Error != h[0].Error {
		t.Fatalf("second read: %d reports, %v", len(h2), err)
	}
}

// Load and a publish let go of imds.db's pages too, checked on a file
// larger than what the kernel maps around one fault (64 KiB): 32
// documents of 32 KB, ~1 MB, all of which Load reads. The committer lets
// go after it answered, so the publish's check waits for it (at most 5 s).
func TestMainFileReadsLeaveNoMappedPages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	ids := registeredIDs(t, s, 32)
	pad := strings.Repeat("p", 32<<10)
	for _, id := range ids {
		if _, err := s.Apply(ctx, id, Change{Publish: stamp(fmt.Sprintf(`"hostname":%q,"pad":%q`, id, pad))}); err != nil {
			t.Fatal(err)
		}
	}
	main := filepath.Join(dir, FileName)
	if fi, err := os.Stat(main); err != nil || fi.Size() < 512<<10 {
		t.Fatalf("%s: %v, %v: want a file of more than 512 KiB", main, fi, err)
	}

	recs, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(ids) {
		t.Fatalf("load: %d records, want %d", len(recs), len(ids))
	}
	if kb := mappedKB(t, main); kb > 64 {
		t.Errorf("%s: %d kB mapped after Load, want the pages let go", FileName, kb)
	}

	if _, err := s.Apply(ctx, ids[7], Change{Publish: stamp(fmt.Sprintf(`"hostname":"b","pad":%q`, pad))}); err != nil {
		t.Fatal(err)
	}
	kb := mappedKB(t, main)
	for deadline := time.Now().Add(5 * time.Second); kb > 64 && time.Now().Before(deadline); kb = mappedKB(t, main) {
		time.Sleep(10 * time.Millisecond)
	}
	if kb > 64 {
		t.Errorf("%s: %d kB mapped after a publish, want the pages let go", FileName, kb)
	}
}

// registeredIDs registers n instances vm-00, vm-01, … and returns their ids.
func registeredIDs(t *testing.T, s *Bolt, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%02d", i)
	}
	registerIDs(t, s, ids...)
	return ids
}
