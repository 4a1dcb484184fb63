<#
.SYNOPSIS
  Verifies link flaps and the renewal after a bounce (issue 19 defects 3
  and 4). BY HAND ONLY, on a Windows Server VM with a console: it bounces
  the NIC -Interface, which cuts the machine's network for a moment (a CI
  runner would lose its connection to the CI service).

.DESCRIPTION
  With the agent running and the NIC on DHCP:

    .\windows\verify\links.ps1 -Interface Ethernet

  1. Bounces the NIC briefly (Disable-NetAdapter / Enable-NetAdapter with
     -FlapMilliseconds between) and checks that the agent's Event Log
     entries after it show the bounce answered (defect 3): either a
     renewal with kind=release+renew, or "lease renewed by Windows' DHCP
     client" when Windows' own client obtained a new lease after the
     bounce (its LeaseObtained moved past the bounce). A plain renewal
     (kind=renew) after a bounce is a FAIL. The decisive check is the
     host's: re-map the VM's NIC onto another DHCP network with a bounce
     (libvirt: virsh update-device with the other network, then the
     domif-setlink flap below) and see the new network's address on the
     NIC (Get-NetIPAddress -InterfaceAlias ... -PrefixOrigin Dhcp).
  2. For defect 4 (a flap shorter than the agent's poll): the count of
     connected-state changes comes from NotifyIpInterfaceChange; run with
     -FlapMilliseconds 200 and check for the same renewal. On a hypervisor
     the better flap is the host's: `virsh domif-setlink DOMAIN VNET down;
     sleep 0.2; virsh domif-setlink DOMAIN VNET up` (QEMU/libvirt), or
     Hyper-V's Disconnect-VMNetworkAdapter / Connect-VMNetworkAdapter, then
     run this script with -NoBounce to check the log only.
#>
param(
    [Parameter(Mandatory)] [string] $Interface,
    [int] $FlapMilliseconds = 500,
    [switch] $NoBounce,
    [string] $Source = 'prewarm-agent',
    [int] $WaitSeconds = 60
)
$ErrorActionPreference = 'Stop'
$since = Get-Date
if (-not $NoBounce) {
    Disable-NetAdapter -Name $Interface -Confirm:$false
    Start-Sleep -Milliseconds $FlapMilliseconds
    Enable-NetAdapter -Name $Interface -Confirm:$false
} else {
    $since = $since.AddMinutes(-5)
}
$deadline = (Get-Date).AddSeconds($WaitSeconds)
$hit = $null
do {
    Start-Sleep -Seconds 2
    $hit = Get-WinEvent -FilterHashtable @{ LogName = 'Application'; ProviderName = $Source; StartTime = $since } -ErrorAction SilentlyContinue |
        Where-Object { $_.Message -match 'DHCP lease renewed|renewed by Windows' } |
        Select-Object -First 1
} until ($hit -or (Get-Date) -gt $deadline)
if ($hit -and $hit.Message -notmatch 'kind=renew\b') {
    Write-Host "PASS the bounce answered: $($hit.Message)"
    exit 0
}
$other = Get-WinEvent -FilterHashtable @{ LogName = 'Application'; ProviderName = $Source; StartTime = $since } -ErrorAction SilentlyContinue |
    Where-Object { $_.Message -match 'DHCP|link' } | Select-Object -First 5
Write-Host 'FAIL no release+renew (nor a lease of Windows'' own since the bounce) logged; the agent logged:'
$other | ForEach-Object { Write-Host "  $($_.Message)" }
exit 1
