package store

import (
	"bytes"
	"encoding/json"

	"github.com/prewarm/prewarm/shared/status"
)

// MaxStatusHistoryBytes is the byte budget of one instance's status
// history: the stored encodings (EncodeReport) of its reports add up to at
// most this. With MaxStatusHistory it bounds what an instance's reports can
// hold in the store, and so what one admin status read can return: 256
// small reports, or 16 near the 64 KiB report limit, instead of 256 × 64 KiB
// (16 MiB). The oldest reports are dropped first; the newest is always kept
// (a report is at most status.MaxReportBytes, which re-encodes well within
// the budget).
const MaxStatusHistoryBytes = 1 << 20

// EncodeReport returns the stored form of r: JSON without whitespace and
// without HTML escaping (json.Marshal stores each '<', '>' and '&' as six
// bytes), so a report costs about what the agent sent.
func EncodeReport(r status.Report) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// HistoryBudget applies the bounds of a status history to its reports
// taken newest first: at most MaxStatusHistory reports and
// MaxStatusHistoryBytes bytes, the newest always kept. The zero value is
// ready to use.
type HistoryBudget struct{ n, bytes int }

// Keep reports whether the next (older) report, whose stored size is
// size, stays in the history. Once it returns false, every older report
// goes too.
func (b *HistoryBudget) Keep(size int) bool {
	b.n++
	b.bytes += size
	return b.n == 1 || (b.n <= MaxStatusHistory && b.bytes <= MaxStatusHistoryBytes)
}
