package netmon

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pollMon reads /sys/class/net every interval: the fallback when multicast
// netlink is unavailable. It sees a flap shorter than the interval only
// through the carrier-change counter, which is why the tracker compares it.
type pollMon struct {
	ctx      context.Context
	dir      string
	interval time.Duration
}

func newPollMon(ctx context.Context, dir string, interval time.Duration) *pollMon {
	return &pollMon{ctx: ctx, dir: dir, interval: interval}
}

func (p *pollMon) Close() error { return nil }

func (p *pollMon) Receive() ([]linkState, bool, error) {
	t := time.NewTimer(p.interval)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return nil, false, errClosed
	case <-t.C:
	}
	s, err := p.Dump()
	return s, true, err
}

func (p *pollMon) Dump() ([]linkState, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, err
	}
	var out []linkState
	for _, e := range ents {
		d := filepath.Join(p.dir, e.Name())
		idx, err := readInt(d, "ifindex")
		if err != nil {
			continue // gone meanwhile
		}
		flags, _ := readInt(d, "flags")
		carrier, _ := readInt(d, "carrier") // EINVAL while admin down
		changes, _ := readInt(d, "carrier_changes")
		typ, _ := readInt(d, "type")
		mac, _ := os.ReadFile(filepath.Join(d, "address"))
		oper, _ := os.ReadFile(filepath.Join(d, "operstate"))
		s := linkState{
			Index:    int(idx),
			Name:     e.Name(),
			AdminUp:  flags&unix.IFF_UP != 0,
			Carrier:  carrier == 1,
			Changes:  uint32(changes),
			Loopback: flags&unix.IFF_LOOPBACK != 0 || typ == 772,
			Oper:     operState(strings.TrimSpace(string(oper))),
		}
		if m := strings.TrimSpace(string(mac)); len(m) == 17 {
			s.MAC = strings.ToLower(m)
		}
		out = append(out, s)
	}
	return out, nil
}

func readInt(dir, name string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 0, 64)
}

func operState(s string) uint8 {
	switch s {
	case "up":
		return operUp
	case "down":
		return operDown
	case "notpresent":
		return 1
	case "lowerlayerdown":
		return 3
	case "testing":
		return 4
	case "dormant":
		return 5
	}
	return operUnknown
}
