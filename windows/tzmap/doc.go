// Package tzmap maps IANA (tzdata) time zone names to Windows time zone IDs,
// the names `tzutil /s` and SetDynamicTimeZoneInformation understand.
//
// The mapping is Unicode CLDR's windowsZones data (windowsZones.xml, embedded
// unchanged but for its comments; see the header of that file for the CLDR
// commit and the Unicode terms of use). CLDR names each zone by its CLDR
// canonical ID, which is often an older tzdata name (Asia/Calcutta, not
// Asia/Kolkata), so lookups also follow the link lines of IANA tzdata
// (tzlinks.txt, taken from tzdata.zi of tzdata 2025b): a name is tried as
// given, then as the zone it links to, then as every other name of that zone.
//
// No Go library was used: the one maintained-looking candidate on the module
// proxy (github.com/yaegashi/wtz.go) was last published in 2020 and lacks the
// zones CLDR added since (Yukon, Ciudad_Juarez, Kazakhstan's 2024 change).
// To update, replace windowsZones.xml with a newer CLDR release's file and
// run `go generate ./windows/tzmap` on a machine with current tzdata.
package tzmap
