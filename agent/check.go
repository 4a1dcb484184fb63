package agent

import "github.com/prewarm/prewarm/shared/config"

// DocumentChecker is implemented by a platform step whose OS has limits the
// document's own rules (config.Validate, the same for every OS: the IMDS
// cannot know the guest's) do not: Windows' 20-character account names, its
// 15-character computer names. The agent asks every step of the platform
// before it applies anything, so a document this OS cannot take fails whole,
// naming each field and the rule, instead of failing one step after others
// changed the machine.
type DocumentChecker interface {
	// CheckDocument returns one error for each field of doc this OS cannot
	// apply, with its path as in config.ValidationError; nil when it can.
	CheckDocument(doc *config.Document) []config.FieldError
}

// checkDocument asks each platform step that is a DocumentChecker about doc
// and returns a *config.ValidationError listing every field they refuse,
// or nil.
func (a *Agent) checkDocument(doc *config.Document) error {
	var fields []config.FieldError
	for _, part := range []any{a.p.Links, a.p.DHCP, a.p.Hostname, a.p.Timezone, a.p.Users, a.p.Network} {
		if c, ok := part.(DocumentChecker); ok {
			fields = append(fields, c.CheckDocument(doc)...)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	return &config.ValidationError{Fields: fields}
}
