package platform

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/windows/registry"
)

// interfaceKey is the TCP/IP parameters key of the adapter guid
// ("{...}"), where Windows keeps its per-interface DNS settings.
func interfaceKey(guid string) string {
	return `SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\` + guid
}

// registrySearchList reads the interface's search list (its SearchList
// value, comma-separated), the fallback where SetInterfaceDnsSettings is
// missing (Server 2019). A missing key or value is an empty list.
func registrySearchList(guid string) []string {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, interfaceKey(guid), registry.QUERY_VALUE)
	if err != nil {
		return nil
	}
	defer k.Close()
	v, _, err := k.GetStringValue("SearchList")
	if err != nil {
		return nil
	}
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
}

// setRegistrySearchList writes the interface's SearchList value (an empty
// list deletes it). The key exists for every TCP/IP interface: a missing
// one is an error, not created.
func setRegistrySearchList(guid string, domains []string) error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, interfaceKey(guid), registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("search domains: open HKLM\\%s: %w", interfaceKey(guid), err)
	}
	defer k.Close()
	if len(domains) == 0 {
		if err := k.DeleteValue("SearchList"); err != nil && !errors.Is(err, registry.ErrNotExist) {
			return fmt.Errorf("search domains: delete SearchList: %w", err)
		}
		return nil
	}
	if err := k.SetStringValue("SearchList", strings.Join(domains, ",")); err != nil {
		return fmt.Errorf("search domains: set SearchList: %w", err)
	}
	return nil
}
