package platform

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/prewarm/prewarm/shared/config"
	"github.com/prewarm/prewarm/windows/internal/plan"
	"github.com/prewarm/prewarm/windows/internal/winapi"
)

// searchStrategy is how this machine takes an interface's search domains
// (plan.SearchStrategyFor: its build, and whether SetInterfaceDnsSettings
// exists). RtlGetVersion reports the real build, whatever the manifest.
func searchStrategy() plan.SearchStrategy {
	return plan.SearchStrategyFor(windows.RtlGetVersion().BuildNumber, winapi.Available("SetInterfaceDnsSettings"))
}

// searchValue is the registry value of the interface's key that holds its
// search domains under strategy s: the connection-specific suffix (Domain)
// before build 19041, else its SearchList.
func searchValue(s plan.SearchStrategy) string {
	if s == plan.SearchSuffix {
		return "Domain"
	}
	return "SearchList"
}

// interfaceKey is the TCP/IP parameters key of the adapter guid
// ("{...}"), where Windows keeps its per-interface DNS settings.
func interfaceKey(guid string) string {
	return `SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\` + guid
}

// registrySearchList reads the interface's search list from its registry
// value (SearchList, comma-separated, or Domain: searchValue), where
// GetInterfaceDnsSettings is missing (Server 2019, Wine). A missing key or
// value is an empty list.
func registrySearchList(guid, value string) []string {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, interfaceKey(guid), registry.QUERY_VALUE)
	if err != nil {
		return nil
	}
	defer k.Close()
	v, _, err := k.GetStringValue(value)
	if err != nil {
		return nil
	}
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
}

// setRegistrySearchList writes the interface's registry value (SearchList
// or Domain: searchValue; an empty list deletes it). Domain holds one
// domain: more is an error (plan.CheckSearchDomains refuses such a
// document before any step). The key exists for every TCP/IP interface: a
// missing one is an error, not created.
func setRegistrySearchList(guid, value string, domains []string) error {
	if value == "Domain" && len(domains) > 1 {
		return fmt.Errorf("search domains: %d domains; this Windows (before build %d) keeps one per interface", len(domains), plan.SearchListBuild)
	}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, interfaceKey(guid), registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("search domains: open HKLM\\%s: %w", interfaceKey(guid), err)
	}
	defer k.Close()
	if len(domains) == 0 {
		if err := k.DeleteValue(value); err != nil && !errors.Is(err, registry.ErrNotExist) {
			return fmt.Errorf("search domains: delete %s: %w", value, err)
		}
		return nil
	}
	if err := k.SetStringValue(value, strings.Join(domains, ",")); err != nil {
		return fmt.Errorf("search domains: set %s: %w", value, err)
	}
	return nil
}

// CheckDocument refuses, before the agent applies anything, search domains
// this Windows cannot carry: more than one for an interface before build
// 19041 (Server 2019), where an interface has one connection-specific
// suffix; and a route metric above Windows' 9999.
func (n *networkConfigurator) CheckDocument(doc *config.Document) []config.FieldError {
	return append(plan.CheckSearchDomains(doc.Network, windows.RtlGetVersion().BuildNumber), plan.CheckRouteMetrics(doc.Network)...)
}
