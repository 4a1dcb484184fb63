package plan

import (
	"strings"
	"testing"

	"github.com/prewarm/prewarm/shared/config"
)

func TestSearchStrategyFor(t *testing.T) {
	for _, tc := range []struct {
		build  uint32
		hasAPI bool
		want   SearchStrategy
	}{
		{17763, false, SearchSuffix},       // Server 2019
		{17763, true, SearchSuffix},        // a 2019 that had the call would still not honour the list
		{19041, true, SearchAPI},           // Windows 10 2004
		{20348, true, SearchAPI},           // Server 2022
		{26100, true, SearchAPI},           // Server 2025
		{19041, false, SearchRegistryList}, // no call, a build that reads the value (Wine)
	} {
		if got := SearchStrategyFor(tc.build, tc.hasAPI); got != tc.want {
			t.Errorf("build %d, API %v: %v, want %v", tc.build, tc.hasAPI, got, tc.want)
		}
	}
}

func TestCheckSearchDomains(t *testing.T) {
	n := &config.Network{Interfaces: []config.Interface{
		{SearchDomains: []string{"corp.example"}},
		{SearchDomains: []string{"a.example", "b.example"}},
		{},
	}}
	errs := CheckSearchDomains(n, 17763)
	if len(errs) != 1 || errs[0].Path != "network.interfaces[1].searchDomains" ||
		!strings.Contains(errs[0].Reason, "17763") || !strings.Contains(errs[0].Reason, "19041") {
		t.Errorf("build 17763: %+v; want one error naming interfaces[1].searchDomains and the builds", errs)
	}
	if errs := CheckSearchDomains(n, 20348); errs != nil {
		t.Errorf("build 20348: %+v; want none", errs)
	}
	if errs := CheckSearchDomains(nil, 17763); errs != nil {
		t.Errorf("no network: %+v", errs)
	}
}
