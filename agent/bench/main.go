// Command bench measures prewarm-agent through the real binaries on
// loopback (agent/bench/run.sh builds them and runs it):
//
//   - publish → agent has the document: from the start of the admin
//     publish until the agent logs "config received" for that generation,
//     side by side with a 1 s fixed-interval poller (cloud-init's
//     behaviour) measured on the same publishes;
//   - the parked agent's RSS and its wake-ups per second (context switches
//     of all its threads, from /proc/PID/task/*/status, over a window).
//
// It starts prewarm-imds and prewarm-agent itself and stops both, by PID,
// when it ends.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
)

func main() {
	imdsBin := flag.String("imds", "bin/prewarm-imds", "prewarm-imds binary")
	agentBin := flag.String("agent", "bin/prewarm-agent", "prewarm-agent binary")
	n := flag.Int("n", 100, "publishes")
	gapMin := flag.Duration("gap-min", 1050*time.Millisecond, "shortest pause between publishes (above the poller's 1 s, so it sees each)")
	gapMax := flag.Duration("gap-max", 1500*time.Millisecond, "longest pause between publishes")
	park := flag.Duration("park", 30*time.Second, "window for the parked agent's wake-ups")
	settle := flag.Duration("settle", 5*time.Second, "quiet time after the last publish before the parked window opens")
	tmp := flag.String("tmp", "", "directory for the run's files, the IMDS store among them (default: $TMPDIR; /dev/shm takes the disk's fsync out)")
	flag.Parse()
	if err := run(*imdsBin, *agentBin, *tmp, *n, *gapMin, *gapMax, *settle, *park); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func run(imdsBin, agentBin, tmp string, n int, gapMin, gapMax, settle, park time.Duration) error {
	dir, err := os.MkdirTemp(tmp, "prewarm-agent-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	guest, err := freeAddr()
	if err != nil {
		return err
	}
	sock := filepath.Join(dir, "admin.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	imds := exec.Command(imdsBin, "serve", "--listen", guest, "--admin-socket", sock, "--data-dir", filepath.Join(dir, "imds"), "--log-level", "warn")
	imds.Stderr = os.Stderr
	if err := imds.Start(); err != nil {
		return err
	}
	defer stop(imds)
	adm := client.NewUnix(sock)
	if err := waitFor(ctx, func() bool { return adm.Healthz(ctx) == nil }); err != nil {
		return fmt.Errorf("imds not healthy: %w", err)
	}
	if _, err := adm.Register(ctx, "vm-1", api.Registration{Addresses: []string{"127.0.0.1"}}); err != nil {
		return err
	}

	agent := exec.Command(agentBin, "run", "--imds-url", "http://"+guest, "--state-dir", filepath.Join(dir, "state"),
		"--log-dir", filepath.Join(dir, "log"), "--run-dir", filepath.Join(dir, "run"), "--root", filepath.Join(dir, "root"),
		"--platform", "none", "--log-format", "json")
	stderr, err := agent.StderrPipe()
	if err != nil {
		return err
	}
	if err := agent.Start(); err != nil {
		return err
	}
	defer stop(agent)

	// The agent's "config received" lines, timestamped as they arrive.
	var mu sync.Mutex
	agentSeen := map[int64]time.Time{}
	seen := make(chan int64, 16)
	var logMu sync.Mutex
	var logLines []timedLine // every line the agent wrote, for the parked window
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t := time.Now()
			logMu.Lock()
			logLines = append(logLines, timedLine{t, sc.Text()})
			logMu.Unlock()
			var l struct {
				Msg        string `json:"msg"`
				Generation int64  `json:"generation"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "config received" {
				mu.Lock()
				agentSeen[l.Generation] = t
				mu.Unlock()
				seen <- l.Generation
			}
		}
	}()

	// The 1 s fixed-interval poller.
	pollerSeen := map[int64]time.Time{}
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	var pwg sync.WaitGroup
	pwg.Go(func() { poll(pctx, "http://"+guest, &mu, pollerSeen) })

	// Let the agent start and park.
	time.Sleep(500 * time.Millisecond)
	published := map[int64]time.Time{}
	acked := map[int64]time.Time{} // the IMDS answered the publish: durable
	for i := range n {
		doc := fmt.Sprintf(`{"partial": %v, "userData": "bench %d"}`, i == 0, i)
		t0 := time.Now()
		g, err := adm.Publish(ctx, "vm-1", []byte(doc))
		if err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		published[g] = t0
		acked[g] = time.Now()
		// Wait for the agent before the next publish, bounded.
		for done := false; !done; {
			select {
			case sg := <-seen:
				done = sg == g
			case <-time.After(10 * time.Second):
				return fmt.Errorf("agent never saw generation %d", g)
			}
		}
		time.Sleep(gapMin + time.Duration(rand.Int64N(int64(gapMax-gapMin)+1)))
	}
	time.Sleep(1100 * time.Millisecond) // the poller's last chance
	pcancel()
	pwg.Wait()

	var agentLat, pollLat, ackLat, afterAck []time.Duration
	mu.Lock()
	for g, t0 := range published {
		ackLat = append(ackLat, acked[g].Sub(t0))
		if t, ok := agentSeen[g]; ok {
			agentLat = append(agentLat, t.Sub(t0))
			afterAck = append(afterAck, t.Sub(acked[g]))
		}
		if t, ok := pollerSeen[g]; ok {
			pollLat = append(pollLat, t.Sub(t0))
		}
	}
	mu.Unlock()
	fmt.Printf("publish -> has document, %d publishes, loopback, real binaries, files in %s\n", n, dir)
	fmt.Printf("  %-26s %s\n", "prewarm-agent (long-poll)", stats(agentLat))
	fmt.Printf("  %-26s %s\n", "1 s fixed-interval poller", stats(pollLat))
	fmt.Printf("of which: publish until the IMDS acknowledged it (durable)  %s\n", stats(ackLat))
	fmt.Printf("          the acknowledgement until the agent had it       %s\n", stats(afterAck))

	// Parked: nothing published; let the last reports and the runtime's
	// background work (GC, scavenger) finish, then measure over the window.
	time.Sleep(settle)
	pid := agent.Process.Pid
	s1, err := switches(pid)
	if err != nil {
		return err
	}
	r1 := timeslices(pid)
	// Sample every second, so each wake-up is placed in time: a periodic
	// one shows as a regular spacing of the seconds that have one.
	start := time.Now()
	prev := s1
	var marks []string
	for time.Since(start) < park {
		time.Sleep(min(time.Second, park-time.Since(start)))
		cur, err := switches(pid)
		if err != nil {
			return err
		}
		if cur != prev {
			marks = append(marks, fmt.Sprintf("%.0fs:+%d", time.Since(start).Seconds(), cur-prev))
		}
		prev = cur
	}
	s2 := prev
	r2 := timeslices(pid)
	rss, err := rssKB(pid)
	if err != nil {
		return err
	}
	fmt.Printf("parked agent (pid %d): RSS %.1f MB (%s), %d context switches in %v = %.3f wake-ups/s (schedstat: %d timeslices run)\n",
		pid, float64(rss)/1024, rssParts(pid), s2-s1, park, float64(s2-s1)/park.Seconds(), r2-r1)
	fmt.Printf("  when (seconds into the window: switches): %s\n", strings.Join(marks, " "))
	// What the agent logged meanwhile (GODEBUG=gctrace=1 in its
	// environment adds the runtime's collections).
	logMu.Lock()
	shown := 0
	for _, l := range logLines {
		if l.at.Before(start) {
			continue
		}
		if shown++; shown > 40 {
			fmt.Printf("  ...\n")
			break
		}
		fmt.Printf("  agent +%.0fs: %s\n", l.at.Sub(start).Seconds(), l.text)
	}
	logMu.Unlock()
	la, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("load average at the end (2 cores, shared): %s", la)
	return nil
}

// poll is cloud-init's way: a plain GET every second.
func poll(ctx context.Context, base string, mu *sync.Mutex, seen map[int64]time.Time) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+api.PathConfig, nil)
		req.Header.Set(api.HeaderMetadata, api.MetadataTrue)
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		t := time.Now()
		if tag, err := api.ParseETag(resp.Header.Get(api.HeaderETag)); err == nil && resp.StatusCode == 200 {
			mu.Lock()
			if _, ok := seen[tag.Generation]; !ok {
				seen[tag.Generation] = t
			}
			mu.Unlock()
		}
	}
}

func stats(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	f := func(x time.Duration) string { return fmt.Sprintf("%.2f ms", float64(x.Microseconds())/1000) }
	return fmt.Sprintf("n=%d p50 %s  p90 %s  p99 %s  max %s", len(d), f(q(0.50)), f(q(0.90)), f(q(0.99)), f(d[len(d)-1]))
}

// switches sums the voluntary and involuntary context switches of every
// thread of pid: each is a wake-up of the process.
func switches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("threads of %d: %v", pid, err)
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just ended
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && (f[0] == "voluntary_ctxt_switches:" || f[0] == "nonvoluntary_ctxt_switches:") {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				sum += v
			}
		}
	}
	return sum, nil
}

type timedLine struct {
	at   time.Time
	text string
}

// timeslices sums the "timeslices run" of every thread of pid
// (/proc/PID/task/*/schedstat, third field): each is one time the thread
// was put on a CPU.
func timeslices(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) == 3 {
			v, _ := strconv.ParseInt(f[2], 10, 64)
			sum += v
		}
	}
	return sum
}

func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

func waitFor(ctx context.Context, cond func() bool) error {
	for range 200 {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
	return fmt.Errorf("not within 5 s")
}

// stop ends a process this bench started: SIGTERM, then SIGKILL after 5 s.
func stop(c *exec.Cmd) {
	if c.Process == nil {
		return
	}
	c.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.Process.Kill()
		<-done
	}
}

// rssParts shows the anonymous and file-backed parts of pid's RSS.
func rssParts(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	var parts []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && (f[0] == "RssAnon:" || f[0] == "RssFile:") {
			parts = append(parts, strings.TrimSuffix(f[0], ":")+" "+f[1]+" kB")
		}
	}
	return strings.Join(parts, ", ")
}
