package system

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/prewarm/prewarm/agent"
	"github.com/prewarm/prewarm/agent/run"
	"github.com/prewarm/prewarm/linux/internal/fsx"
	"github.com/prewarm/prewarm/shared/config"
)

const zoneinfo = "/usr/share/zoneinfo/"

// ApplyTimezone implements agent.TimezoneSetter: the /etc/localtime
// symlink, /etc/timezone, and timedatectl on a live systemd system whose
// systemd-timedated runs (daemonRunning says why only then). A zone
// the target's tzdata does not have fails the step, naming it; so does a
// name whose file is a link that leaves the zoneinfo tree or loops
// (zoneinfo/localtime links to /etc/localtime on Debian: linking
// /etc/localtime to it would make a loop).
func (s *System) ApplyTimezone(ctx context.Context, zone string) (agent.StepResult, error) {
	var res agent.StepResult
	// The document's name rule (config.ValidZoneName), again; whether
	// the zone exists is this root's tree to say.
	if !config.ValidZoneName(zone) {
		return res, fmt.Errorf("set timezone %q: %w", zone, ErrUnknownZone)
	}
	resolved, via, err := resolveInRoot(s.o.Root, zoneinfo+zone)
	if err != nil {
		return res, fmt.Errorf("set timezone %q: %w", zone, errors.Join(ErrUnknownZone, err))
	}
	if slices.Contains(via, "/etc/localtime") {
		return res, fmt.Errorf("set timezone %q: %w: %s%s links to /etc/localtime, which it would replace (a loop)", zone, ErrUnknownZone, zoneinfo, zone)
	}
	if !strings.HasPrefix(resolved, zoneinfo) {
		return res, fmt.Errorf("set timezone %q: %w: %s%s resolves to %s, outside %s", zone, ErrUnknownZone, zoneinfo, zone, resolved, zoneinfo)
	}
	if !isTZif(s.path(resolved)) {
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
	if len(res.Actions) > 0 && s.systemdPID1() && s.daemonRunning("systemd-timedated") && s.available("timedatectl") {
		if _, err := s.o.Runner.Run(ctx, run.Cmd{Name: "timedatectl", Args: []string{"set-timezone", zone}}); err != nil {
			return res, fmt.Errorf("set timezone %q: %w", zone, err)
		}
		res.Actions = append(res.Actions, "timedatectl set-timezone")
	}
	res.Changed = len(res.Actions) > 0
	return res, nil
}

// maxLinks bounds the links followed in one resolution, as the kernel's
// MAXSYMLINKS does.
const maxLinks = 40

// resolveInRoot resolves the absolute path p inside root the way the target
// system would see it: absolute links and ".." are taken relative to root,
// never beyond it. It returns the root-relative path with every link
// followed and the links it followed on the way, or an error for a loop
// (more than maxLinks links).
func resolveInRoot(root, p string) (resolved string, via []string, err error) {
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	links := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		fi, err := os.Lstat(fsx.Join(root, next))
		if err != nil {
			return "", via, fmt.Errorf("resolve %s: %w", p, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", via, fmt.Errorf("resolve %s: %w", p, syscall.ELOOP)
		}
		via = append(via, next)
		target, err := os.Readlink(fsx.Join(root, next))
		if err != nil {
			return "", via, fmt.Errorf("resolve %s: %w", p, err)
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, via, nil
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
