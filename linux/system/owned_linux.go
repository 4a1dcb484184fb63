package system

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prewarm/prewarm/linux/internal/fsx"
)

// The agent manages an existing account only if it created it (users.json
// says so, by name and uid) or the image builder listed it
// (Options.ManageExistingUsers), and never one of a system range of the
// target's login.defs or nobody. Without that, a document naming "backup"
// or an administrator's account would take it over: set its password,
// authorize keys for it, give it sudo.

// defaultStateDir is Options.StateDir when it is empty.
const defaultStateDir = "/var/lib/prewarm"

// usersRecordFile, in the state directory inside the target root, records
// the accounts the agent created.
const usersRecordFile = "users.json"

// maxRecordSize caps users.json, which only the agent writes.
const maxRecordSize = 1 << 20

// usersRecord is users.json.
type usersRecord struct {
	Created []createdUser `json:"created"`
}

// createdUser is an account the agent created. The uid tells it from a
// later account of the same name (the first deleted, someone else's made).
type createdUser struct {
	Name string `json:"name"`
	// UID is 0 while the account is being created: the entry is written
	// before useradd runs and completed after, so that an agent stopped
	// between the two does not leave behind an account it made and then
	// refuses to manage. (uid 0 is root, which the agent never creates.)
	UID int `json:"uid,omitempty"`
}

func (r *usersRecord) find(name string) int {
	return slices.IndexFunc(r.Created, func(c createdUser) bool { return c.Name == name })
}

// recordPath is users.json as a host path.
func (s *System) recordPath() string {
	d := s.o.StateDir
	if d == "" {
		d = defaultStateDir
	}
	return s.path(filepath.Join(d, usersRecordFile))
}

// loadRecord reads users.json; a missing one is an empty record. A record
// that cannot be read is an error: the agent then creates nobody, since
// writing a new record would forget the accounts in the old one.
func (s *System) loadRecord() (*usersRecord, error) {
	p := s.recordPath()
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return &usersRecord{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the record of created users: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the record of created users %s: %w", p, err)
	}
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("the record of created users %s is larger than %d bytes", p, maxRecordSize)
	}
	var r usersRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse the record of created users %s: %w", p, err)
	}
	return &r, nil
}

// saveRecord writes users.json atomically (0600 in a 0700 directory).
func (s *System) saveRecord(r *usersRecord) error {
	if err := fsx.WriteJSON(s.recordPath(), r); err != nil {
		return fmt.Errorf("record created users: %w", err)
	}
	return nil
}

// loginDefs are the uid ranges of the target's /etc/login.defs.
type loginDefs struct {
	uidMin, uidMax, sysMin, sysMax int64
}

// readLoginDefs reads the uid ranges as shadow's getdef does: the last
// definition wins, numbers are C-style (0x hex, 0 octal), and a missing or
// malformed one takes shadow's default (UID_MIN 1000, UID_MAX 60000,
// SYS_UID_MIN 101, SYS_UID_MAX UID_MIN-1).
func (s *System) readLoginDefs() loginDefs {
	d := loginDefs{uidMin: 1000, uidMax: 60000, sysMin: 101, sysMax: -1}
	b, err := os.ReadFile(s.path("/etc/login.defs"))
	if err != nil {
		d.sysMax = d.uidMin - 1
		return d
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		n, err := strconv.ParseInt(strings.Trim(f[1], `"`), 0, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "UID_MIN":
			d.uidMin = n
		case "UID_MAX":
			d.uidMax = n
		case "SYS_UID_MIN":
			d.sysMin = n
		case "SYS_UID_MAX":
			d.sysMax = n
		}
	}
	if d.sysMax < 0 {
		d.sysMax = d.uidMin - 1
	}
	return d
}

// uidMin is UID_MIN of the target's /etc/login.defs.
func (s *System) uidMin() int { return int(s.readLoginDefs().uidMin) }

// systemAccount says why an account is one the agent never manages, or ""
// if it is not: nobody, or a uid outside UID_MIN..UID_MAX or inside
// SYS_UID_MIN..SYS_UID_MAX.
func (d loginDefs) systemAccount(name string, uid int64) string {
	switch {
	case name == "nobody" || uid == 65534 || uid == 1<<32-2:
		return fmt.Sprintf("uid %d is nobody, the overflow account", uid)
	case uid < d.uidMin:
		return fmt.Sprintf("uid %d is below UID_MIN %d", uid, d.uidMin)
	case uid > d.uidMax:
		return fmt.Sprintf("uid %d is above UID_MAX %d", uid, d.uidMax)
	case uid >= d.sysMin && uid <= d.sysMax:
		return fmt.Sprintf("uid %d is in SYS_UID_MIN..SYS_UID_MAX %d..%d", uid, d.sysMin, d.sysMax)
	}
	return ""
}

// mayManage decides whether the agent manages the existing account pw: a
// system account never; otherwise one it created (adopting an entry left
// pending by an interrupted create) or one the image builder listed.
func (s *System) mayManage(pw *passwdEnt, rec *usersRecord) error {
	if why := s.readLoginDefs().systemAccount(pw.name, int64(pw.uid)); why != "" {
		return fmt.Errorf("%s (/etc/login.defs); refusing to manage it, listed or not: %w", why, ErrSystemAccount)
	}
	if i := rec.find(pw.name); i >= 0 {
		switch rec.Created[i].UID {
		case pw.uid:
			return nil
		case 0:
			rec.Created[i].UID = pw.uid
			return s.saveRecord(rec)
		}
	}
	if slices.Contains(s.o.ManageExistingUsers, pw.name) {
		return nil
	}
	return fmt.Errorf("exists (uid %d) and was not created by the agent; refusing to manage it (an image builder allows an existing account with --manage-existing-users): %w", pw.uid, ErrUnmanagedAccount)
}
