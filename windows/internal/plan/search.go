package plan

import (
	"fmt"

	"github.com/prewarm/prewarm/shared/config"
)

// SearchListBuild is the first Windows build whose DNS client honours an
// interface's own search list (the SearchList value of the interface's
// TCP/IP key, which SetInterfaceDnsSettings writes): Windows 10 2004 and
// Server 2022 on. Before it (Server 2019 is build 17763) an interface has
// one connection-specific suffix (its Domain value) and the machine one
// global SearchList.
const SearchListBuild = 19041

// SearchStrategy is how the search domains of one interface are set.
type SearchStrategy int

const (
	// SearchAPI: SetInterfaceDnsSettings' SearchList.
	SearchAPI SearchStrategy = iota
	// SearchRegistryList: the interface's SearchList registry value, on a
	// build that reads it but lacks the call (Wine).
	SearchRegistryList
	// SearchSuffix: the interface's Domain registry value, its
	// connection-specific DNS suffix, which holds one domain. The global
	// SearchList is the machine's (an image or a group policy sets it):
	// the agent does not write it, and a document with more than one
	// domain for the interface is refused (CheckSearchDomains).
	SearchSuffix
)

func (s SearchStrategy) String() string {
	switch s {
	case SearchAPI:
		return "SetInterfaceDnsSettings"
	case SearchRegistryList:
		return "the interface's SearchList value"
	case SearchSuffix:
		return "the interface's Domain value (connection-specific suffix)"
	}
	return fmt.Sprintf("SearchStrategy(%d)", int(s))
}

// SearchStrategyFor chooses the strategy for a Windows build, and whether
// SetInterfaceDnsSettings exists there.
func SearchStrategyFor(build uint32, hasAPI bool) SearchStrategy {
	switch {
	case build < SearchListBuild:
		return SearchSuffix
	case hasAPI:
		return SearchAPI
	default:
		return SearchRegistryList
	}
}

// CheckSearchDomains returns, for the agent's check before it applies
// anything, one field error for each interface whose searchDomains the
// build cannot carry: more than one domain before SearchListBuild.
func CheckSearchDomains(n *config.Network, build uint32) []config.FieldError {
	if n == nil || build >= SearchListBuild {
		return nil
	}
	var out []config.FieldError
	for i, in := range n.Interfaces {
		if len(in.SearchDomains) > 1 {
			out = append(out, config.FieldError{
				Path: fmt.Sprintf("network.interfaces[%d].searchDomains", i),
				Reason: fmt.Sprintf("has %d domains; Windows before build %d (this is build %d; Server 2019 is 17763) keeps one search domain per interface, its connection-specific suffix: give one, or none",
					len(in.SearchDomains), SearchListBuild, build),
			})
		}
	}
	return out
}
