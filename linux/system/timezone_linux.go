package system

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/linux/internal/run"
)

var zoneRE = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)

const zoneinfo = "/usr/share/zoneinfo/"

// ApplyTimezone implements agent.TimezoneSetter: the /etc/localtime
// symlink, /etc/timezone, and timedatectl on a live systemd system. A zone
// the target's tzdata does not have fails the step, naming it.
func (s *System) ApplyTimezone(ctx context.Context, zone string) (agent.StepResult, error) {
	var res agent.StepResult
	if zone == "Local" || !zoneRE.MatchString(zone) || !isTZif(s.path(zoneinfo+zone)) {
		return res, fmt.Errorf("set timezone %q: %w", zone, ErrUnknownZone)
	}
	lt := s.path("/etc/localtime")
	cur, _ := os.Readlink(lt)
	if _, after, ok := strings.Cut(cur, "zoneinfo/"); !ok || after != zone {
		if _, err := fsx.Symlink(zoneinfo+zone, lt); err != nil {
			return res, fmt.Errorf("set timezone %q: %w", zone, err)
		}
		res.Actions = append(res.Actions, "link /etc/localtime to "+zoneinfo+zone)
	}
	tp := s.path("/etc/timezone")
	if c, err := fsx.WriteFile(tp, []byte(zone+"\n"), fsx.WriteOptions{Mode: fileMode(tp, 0o644)}); err != nil {
		return res, fmt.Errorf("set timezone %q: %w", zone, err)
	} else if c {
		res.Actions = append(res.Actions, "set /etc/timezone")
	}
	if len(res.Actions) > 0 && s.systemdPID1() && s.available("timedatectl") {
		if _, err := s.o.Runner.Run(ctx, run.Cmd{Name: "timedatectl", Args: []string{"set-timezone", zone}}); err != nil {
			return res, fmt.Errorf("set timezone %q: %w", zone, err)
		}
		res.Actions = append(res.Actions, "timedatectl set-timezone")
	}
	res.Changed = len(res.Actions) > 0
	return res, nil
}

func isTZif(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 4)
	_, err = io.ReadFull(f, b)
	return err == nil && bytes.Equal(b, []byte("TZif"))
}
