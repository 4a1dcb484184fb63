package plan

import "time"

// SkipRenewal decides whether the agent leaves a DHCP renewal to Windows'
// own client: it does when the lease was obtained again since the agent
// first looked (obtainedBefore), or within grace before now, because the
// built-in client renews by itself on a link change and a second renewal
// would only fight it.
func SkipRenewal(obtainedBefore, obtainedNow, now time.Time, grace time.Duration) bool {
	if obtainedNow.IsZero() {
		return false
	}
	if obtainedNow.After(obtainedBefore) {
		return true
	}
	return now.Sub(obtainedNow) < grace && !obtainedNow.After(now)
}
