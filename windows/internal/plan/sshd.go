package plan

import (
	"bufio"
	"bytes"
	"strings"
)

// SharedAdminKeys reports whether the sshd_config text cfg makes OpenSSH for
// Windows read administrators_authorized_keys, and nothing of the user's
// own, for members of Administrators: an active "Match Group
// administrators" block (Windows' shipped default) whose AuthorizedKeysFile
// names that file. line is the Match line's number (1-based).
//
// In that file a key logs on as any administrator, not only the one the
// document gave it, so the agent never writes an administrator's keys
// there (docs/windows.md): under such a config their keys in the user's own
// file are unused, and the users step says so.
func SharedAdminKeys(cfg []byte) (line int, shared bool) {
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	sc.Buffer(nil, 1<<20)
	n, matchLine, inAdmins := 0, 0, false
	for sc.Scan() {
		n++
		f := strings.Fields(strings.TrimSpace(sc.Text()))
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		// Keyword and arguments: "Keyword arg", "Keyword=arg".
		kw, rest, _ := strings.Cut(f[0], "=")
		args := f[1:]
		if rest != "" {
			args = append([]string{rest}, args...)
		}
		switch strings.ToLower(kw) {
		case "match":
			inAdmins = matchesAdministrators(args)
			matchLine = n
		case "authorizedkeysfile":
			if inAdmins {
				for _, a := range args {
					if strings.Contains(strings.ToLower(a), "administrators_authorized_keys") {
						return matchLine, true
					}
				}
			}
		}
	}
	return 0, false
}

// matchesAdministrators reports whether the Match criteria args select the
// administrators group: "Group administrators" (a list may hold it; sshd
// compares group names without regard to case on Windows).
func matchesAdministrators(args []string) bool {
	for i := 0; i+1 < len(args); i += 2 {
		if !strings.EqualFold(args[i], "group") {
			continue
		}
		for g := range strings.SplitSeq(strings.Trim(args[i+1], `"`), ",") {
			if strings.EqualFold(g, "administrators") {
				return true
			}
		}
	}
	return false
}
