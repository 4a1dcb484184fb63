package plan

import (
	"errors"
	"strings"
	"testing"
)

// TestMayManage: an existing account is managed only if the agent created
// it (recorded with the same SID, or pending: recorded just before
// NetUserAdd and never completed) or the image builder listed it; a
// built-in account never, listed or not. Names compare as Windows does,
// without regard to case.
func TestMayManage(t *testing.T) {
	const sid = "S-1-5-21-1-2-3-1001"
	created := map[string]string{"made": sid, "pending": "", "gone": "S-1-5-21-1-2-3-1000"}
	allow := []string{"Listed"}
	tests := []struct {
		name, sid string
		rid       uint32
		want      error // nil: managed
		adopt     bool  // the pending entry takes the account's SID
	}{
		{"made", sid, 1001, nil, false},
		{"MADE", sid, 1001, nil, false},
		{"pending", sid, 1001, nil, true},
		{"listed", sid, 1001, nil, false},
		{"someone", sid, 1001, ErrUnmanagedAccount, false},
		{"gone", sid, 1001, ErrUnmanagedAccount, false}, // another account under a name the agent once made
		{"Administrator", "S-1-5-21-1-2-3-500", 500, ErrSystemAccount, false},
		{"listed", "S-1-5-21-1-2-3-501", 501, ErrSystemAccount, false},
		{"made", "S-1-5-21-1-2-3-503", 503, ErrSystemAccount, false},
	}
	for _, tt := range tests {
		c := map[string]string{}
		for k, v := range created {
			c[k] = v
		}
		err := MayManage(tt.name, tt.sid, tt.rid, c, allow)
		if tt.want == nil && err != nil || tt.want != nil && (!errors.Is(err, tt.want) || !strings.Contains(err.Error(), `"`+tt.name+`"`)) {
			t.Errorf("%s (rid %d): err %v, want %v naming the user", tt.name, tt.rid, err, tt.want)
		}
		if tt.adopt && c["pending"] != tt.sid {
			t.Errorf("%s: pending entry not completed: %v", tt.name, c)
		}
	}
}
