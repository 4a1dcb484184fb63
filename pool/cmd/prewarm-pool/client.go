package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	poolcfg "github.com/prewarm/prewarm/pool/config"
	"github.com/prewarm/prewarm/pool/controller"
	"github.com/prewarm/prewarm/shared/api"
)

// apiClient talks to the controller's admin socket.
type apiClient struct {
	hc *http.Client
}

func newClient(socket string) *apiClient {
	return &apiClient{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// do sends a request and decodes a 2xx answer into out; an error answer
// becomes an error naming its fields.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://prewarm-pool"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", api.ContentTypeJSON)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("controller unreachable: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		var b strings.Builder
		b.WriteString(e.Error)
		for _, f := range e.Fields {
			fmt.Fprintf(&b, "\n  %s: %s", f.Path, f.Reason)
		}
		return fmt.Errorf("%s", b.String())
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

func socketFlag(fs *flag.FlagSet) *string {
	return fs.String("socket", poolcfg.DefaultSocket, "the controller's admin socket")
}

func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("output", "text", "output: text or json")
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return fmt.Errorf("%w: --output must be text or json (got %q)", errUsage, o)
	}
	return nil
}

func claim(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("claim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := socketFlag(fs)
	docPath := fs.String("config", "", "the final config document (JSON file, - for stdin)")
	network := fs.String("network", "", "tenant network (default: the flavor's tenantNetwork)")
	claimID := fs.String("claim-id", "", "claim id: a retry with the same id returns the same VM")
	ip := fs.String("ip", "", "tenant address to reserve (default: the first free one)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up waiting after this long")
	output := outputFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: claim takes one FLAVOR", errUsage)
	}
	if *docPath == "" {
		return fmt.Errorf("%w: --config DOC.json is required", errUsage)
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if *timeout <= 0 {
		return fmt.Errorf("%w: --timeout must be positive", errUsage)
	}
	var doc []byte
	if *docPath == "-" {
		doc, err = io.ReadAll(os.Stdin)
	} else {
		doc, err = os.ReadFile(*docPath)
	}
	if err != nil {
		return fmt.Errorf("read document: %w", err)
	}
	if !json.Valid(doc) {
		return fmt.Errorf("document %s is not valid JSON", *docPath)
	}
	req := controller.ClaimRequest{Flavor: pos[0], Network: *network, ClaimID: *claimID, IP: *ip,
		TimeoutMS: timeout.Milliseconds(), Document: doc}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+2*time.Second)
	defer cancel()
	var res controller.ClaimResult
	if err := newClient(*socket).do(ctx, http.MethodPost, controller.PathClaims, req, &res); err != nil {
		return err
	}
	if *output == "json" {
		return json.NewEncoder(stdout).Encode(res)
	}
	t := res.Timings
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "vm\t%s\n", res.VM)
	fmt.Fprintf(w, "mac\t%s\n", res.MAC)
	fmt.Fprintf(w, "network\t%s\n", res.Network)
	fmt.Fprintf(w, "ip\t%s\n", res.IP)
	fmt.Fprintf(w, "path\t%s\n", res.Path)
	fmt.Fprintf(w, "claim id\t%s\n", res.ClaimID)
	fmt.Fprintf(w, "generation\t%d\n", res.Generation)
	if res.Replayed {
		fmt.Fprintf(w, "replayed\tyes (the claim id had completed before; timings are not repeated)\n")
	} else {
		fmt.Fprintf(w, "timing (ms since the claim)\tpicked %d, reserved %d, published %d, remapped %d, bounced %d, renewed %d, provisioned %d, total %d\n",
			t.PickedMS, t.ReservedMS, t.PublishedMS, t.RemappedMS, t.BouncedMS, t.RenewedMS, t.ProvisionedMS, t.TotalMS)
		fmt.Fprintf(w, "applied (agent's steps)\t%d ms\n", t.AppliedMS)
	}
	return w.Flush()
}

func statusCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := socketFlag(fs)
	output := outputFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: status takes no arguments", errUsage)
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st controller.Status
	if err := newClient(*socket).do(ctx, http.MethodGet, controller.PathStatus, nil, &st); err != nil {
		return err
	}
	if *output == "json" {
		return json.NewEncoder(stdout).Encode(st)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "FLAVOR\tTARGET\tWARM\tBOOTING\tCLAIMING\tCLAIMED\tFAILED\tLAST BOOT")
	for _, f := range st.Flavors {
		last := "-"
		if f.LastBootAt != "" {
			last = fmt.Sprintf("%.1fs at %s", float64(f.LastBootMS)/1000, f.LastBootAt)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", f.Name, f.Target, f.Warm, f.Booting, f.Claiming, f.Claimed, f.Failed, last)
	}
	if len(st.VMs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "VM\tFLAVOR\tSTATE\tPATH\tMAC\tNETWORK\tIP\tCLAIM")
		sort.Slice(st.VMs, func(i, j int) bool { return st.VMs[i].Name < st.VMs[j].Name })
		for _, v := range st.VMs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Flavor, v.State, dash(v.Path), v.MAC, v.Network, dash(v.IP), dash(v.ClaimID))
		}
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func release(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := socketFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: release takes one VM name", errUsage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := newClient(*socket).do(ctx, http.MethodDelete, controller.PathVMs+"/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "released %s\n", pos[0])
	return nil
}
