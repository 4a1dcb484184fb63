<#
.SYNOPSIS
  Verifies the agent's static network on Windows (issue 19 defects 1 and 2).

.DESCRIPTION
  Run as Administrator after the agent applied a document that gives the
  interface with MAC -Mac the static addresses -Addresses (the first is the
  primary one; the others are extra addresses), optionally the route
  -Route via -Via (with the document's metric -RouteMetric, when it gives
  one) and the name servers -Dns (IPv4 and IPv6 mixed) and search domains
  -Search. windows/verify/integration.ps1 (the Windows CI job)
  calls it after its publish; by hand, on a Windows Server VM:

    .\windows\verify\network.ps1 -Mac 52-54-00-12-34-56 -Addresses 192.0.2.10/24,192.0.2.11/24 `
        -Route 198.51.100.0/24 -Via 192.0.2.1 -RouteMetric 100 -Dns 192.0.2.53,2001:db8::53 -Search corp.example

  Checks, each printed as PASS or FAIL, and the script exits 1 on any FAIL:
  - defect 2: every extra address is SkipAsSource, the primary one is not;
    the route's own metric (Get-NetRoute's RouteMetric, which Windows adds
    to the interface's InterfaceMetric when it compares routes) is
    -RouteMetric, and the interface has one route to -Route through -Via
    (a changed metric is set on the agent's row, not a second row);
    the IPv6 name servers are in the interface's IPv6 list and the IPv4
    ones in its IPv4 list; the search domains are the interface's
    SearchList (registry value under Tcpip\Parameters\Interfaces\{guid},
    which both SetInterfaceDnsSettings and the Server 2019 fallback write).
  - defect 1: the addresses and the route the agent added are in the
    active store only (iphlpapi has no persistent store); removing them by
    hand, as a restart does, and restarting the service brings them back
    within -RestoreSeconds (the agent re-applies its record at start).
#>
param(
    [Parameter(Mandatory)] [string] $Mac,
    [Parameter(Mandatory)] [string[]] $Addresses,
    [string] $Route,
    [string] $Via,
    [int] $RouteMetric,
    [string[]] $Dns,
    [string[]] $Search,
    [string] $Service = 'prewarm-agent',
    [int] $RestoreSeconds = 60
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'lib.ps1')

$mac = $Mac.ToUpper().Replace(':', '-')
$nic = Get-NetAdapter | Where-Object { $_.MacAddress -eq $mac } | Select-Object -First 1
if (-not $nic) { throw "no adapter with MAC $Mac" }
$ix = $nic.ifIndex
Write-Host "adapter $($nic.Name) (index $ix, $($nic.InterfaceGuid))"

function Test-Addresses {
    $ok = $true
    for ($i = 0; $i -lt $Addresses.Count; $i++) {
        $ip, $len = $Addresses[$i].Split('/')
        $a = Get-NetIPAddress -InterfaceIndex $ix -IPAddress $ip -ErrorAction SilentlyContinue
        if (-not $a) { $ok = $false; continue }
        if ($a.PrefixLength -ne [int]$len) { $ok = $false }
        # The first address is the primary one (a source address).
        if ($a.SkipAsSource -ne ($i -gt 0)) { $ok = $false }
    }
    return $ok
}

# Defect 2: SkipAsSource, prefix lengths.
foreach ($p in $Addresses) {
    $ip, $len = $p.Split('/')
    $a = Get-NetIPAddress -InterfaceIndex $ix -IPAddress $ip -ErrorAction SilentlyContinue
    Check "address $p present" ($null -ne $a)
    if ($a) {
        $extra = $p -ne $Addresses[0]
        Check "address $p SkipAsSource=$extra" ($a.SkipAsSource -eq $extra) "(is $($a.SkipAsSource))"
        Check "address $p prefix length" ($a.PrefixLength -eq [int]$len) "(is $($a.PrefixLength))"
    }
}
if ($Route) {
    $r = Get-NetRoute -InterfaceIndex $ix -DestinationPrefix $Route -ErrorAction SilentlyContinue |
        Where-Object { -not $Via -or $_.NextHop -eq $Via }
    Check "route $Route via $Via present" ($null -ne $r)
    if ($r -and $Via) {
        Check "one route $Route via $Via" (@($r).Count -eq 1) "($(@($r).Count))"
    }
    if ($r -and $RouteMetric) {
        $m = @($r)[0].RouteMetric
        $ifMetric = (Get-NetIPInterface -InterfaceIndex $ix -AddressFamily IPv4).InterfaceMetric
        Check "route $Route RouteMetric $RouteMetric (the interface adds $ifMetric)" ($m -eq $RouteMetric) "(is $m)"
    }
}

# Defect 2: name servers per family.
if ($Dns) {
    $want4 = @($Dns | Where-Object { ([System.Net.IPAddress]$_).AddressFamily -eq 'InterNetwork' })
    $want6 = @($Dns | Where-Object { ([System.Net.IPAddress]$_).AddressFamily -eq 'InterNetworkV6' })
    $have4 = @((Get-DnsClientServerAddress -InterfaceIndex $ix -AddressFamily IPv4).ServerAddresses)
    $have6 = @((Get-DnsClientServerAddress -InterfaceIndex $ix -AddressFamily IPv6).ServerAddresses)
    Check "IPv4 name servers $($want4 -join ',')" (($have4 -join ',') -eq ($want4 -join ',')) "(are $($have4 -join ','))"
    Check "IPv6 name servers $($want6 -join ',')" (($have6 -join ',') -eq ($want6 -join ',')) "(are $($have6 -join ','))"
}

# Defect 2: the interface's search list.
if ($Search) {
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\$($nic.InterfaceGuid)"
    $sl = (Get-ItemProperty -Path $key -Name SearchList -ErrorAction SilentlyContinue).SearchList
    Check "search list $($Search -join ',')" ($sl -eq ($Search -join ',')) "(is '$sl')"
}

# Defect 1: active store only, re-applied at start.
foreach ($p in $Addresses) {
    $ip = $p.Split('/')[0]
    $persisted = Get-NetIPAddress -PolicyStore PersistentStore -IPAddress $ip -ErrorAction SilentlyContinue
    # The primary address may be persisted by netsh when the agent turned
    # DHCP off with it; the extra ones never are.
    if ($p -ne $Addresses[0]) {
        Check "extra address $p not in the persistent store (the agent re-applies it)" ($null -eq $persisted)
    }
}
Write-Host "removing the extra addresses and the route by hand, as a restart does, then restarting $Service"
foreach ($p in ($Addresses | Select-Object -Skip 1)) {
    Remove-NetIPAddress -InterfaceIndex $ix -IPAddress $p.Split('/')[0] -Confirm:$false -ErrorAction SilentlyContinue
}
if ($Route) {
    Remove-NetRoute -InterfaceIndex $ix -DestinationPrefix $Route -Confirm:$false -ErrorAction SilentlyContinue
}
Restart-Service -Name $Service
$deadline = (Get-Date).AddSeconds($RestoreSeconds)
do {
    Start-Sleep -Seconds 1
    $back = Test-Addresses
    if ($back -and $Route) {
        $back = $null -ne (Get-NetRoute -InterfaceIndex $ix -DestinationPrefix $Route -ErrorAction SilentlyContinue)
    }
} until ($back -or (Get-Date) -gt $deadline)
Check "addresses and route restored by the agent's start within $RestoreSeconds s" $back
if ($back -and $Route -and $RouteMetric) {
    $m = @(Get-NetRoute -InterfaceIndex $ix -DestinationPrefix $Route -ErrorAction SilentlyContinue)[0].RouteMetric
    Check "restored route $Route keeps RouteMetric $RouteMetric" ($m -eq $RouteMetric) "(is $m)"
}

# An explicit exit: integration.ps1 reads $LASTEXITCODE (lib.ps1 says why).
exit (Get-ChecksExitCode 'network: ')
