<#
.SYNOPSIS
  End-to-end check of the Windows agent on a real Windows Server: install
  the MSI, run the agent as its service against a prewarm-imds on loopback,
  publish documents, assert the machine with PowerShell, uninstall.

.DESCRIPTION
  The Windows CI job (.github/workflows/windows.yml) runs it on
  windows-2022 and windows-2025 as the runner's administrator. By hand, on
  a throwaway Windows Server VM (it creates local users, changes the time
  zone, the pending computer name and, unless -SkipNetwork, the primary
  NIC's addressing; it undoes what it can at the end):

    # on Linux: the MSIs and the IMDS for Windows
    MSI_VERSION=0.0.1 OUT=dist/old packaging/windows/build-msi.sh
    MSI_VERSION=0.0.2 OUT=dist/new packaging/windows/build-msi.sh
    MSI_VERSION=0.0.2 OUT=dist/rebuilt packaging/windows/build-msi.sh
    GOOS=windows go build -o dist/prewarm-imds.exe ./imds/cmd/prewarm-imds
    # copy dist\ and windows\verify\ to the VM, then in an elevated PowerShell:
    .\windows\verify\integration.ps1 -Msi dist\new\prewarm-agent-0.0.2-x64.msi `
        -OlderMsi dist\old\prewarm-agent-0.0.1-x64.msi `
        -RebuiltMsi dist\rebuilt\prewarm-agent-0.0.2-x64.msi -Imds dist\prewarm-imds.exe

  Each check prints PASS or FAIL; the script exits 1 if any failed (and
  2 if it could not run at all). What it verifies (issue 19):
  - MSI (defect 10): an older MSI is replaced by a newer one, a rebuild of
    the same version replaces it too (one entry in Programs and Features,
    never two), an older one over a newer one is refused (exit 1603) and
    changes nothing; EventMessageFile is REG_EXPAND_SZ; uninstall removes
    the service.
  - users (defects 5, 6): a user with a password and a key-only user
    (random password: the account has one, PasswordRequired) exist; the
    key-only user's authorized_keys is owned by Administrators and the
    user may only read it; no key lands in administrators_authorized_keys.
  - validation (defect 7): a user name of 21 characters fails the whole
    generation naming users[0].name, and nothing of that document is
    applied (its time zone is not set).
  - reboot policy (defect 8, "never"): a new hostname gives provisioned
    with rebootRequired and the pending computer name; the machine is not
    restarted. The "allowed" path restarts the machine, which a CI job
    cannot survive: by hand with windows/verify/reboot.ps1.
  - the time zone (Get-TimeZone) and an extra static address
    (Get-NetIPAddress) on the primary NIC, kept on its own address, gateway
    and name servers (a runner must stay reachable), then
    windows/verify/network.ps1 (defects 1, 2); a third generation puts the
    NIC back on DHCP (static -> DHCP, defect 2); then
    windows/verify/service.ps1 (defect 9).
#>
param(
    [Parameter(Mandatory)] [string] $Msi,
    [Parameter(Mandatory)] [string] $Imds,
    [string] $OlderMsi,
    [string] $RebuiltMsi,
    [int] $Port = 8169,
    [int] $AdminPort = 8170,
    [int] $WaitSeconds = 180,
    [switch] $SkipNetwork,
    [switch] $KeepInstalled
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'lib.ps1')
$verify = $PSScriptRoot
$Msi = (Resolve-Path $Msi).Path
$Imds = (Resolve-Path $Imds).Path
# Absolute, as $Msi: msiexec resolves a relative package path against its
# own working directory, not this script's location.
if ($OlderMsi) { $OlderMsi = (Resolve-Path $OlderMsi).Path }
if ($RebuiltMsi) { $RebuiltMsi = (Resolve-Path $RebuiltMsi).Path }
$service = 'prewarm-agent'
$id = 'ci-windows'
# RUNNER_TEMP in CI (the logs step uploads it), TEMP by hand: Join-Path
# refuses a null path, so the choice comes first.
$tempRoot = if ($env:RUNNER_TEMP) { $env:RUNNER_TEMP } else { $env:TEMP }
$work = Join-Path $tempRoot ("prewarm-it-" + [guid]::NewGuid().ToString('N').Substring(0, 8))
New-Item -ItemType Directory -Force -Path $work, "$work\publish", "$work\data" | Out-Null
Write-Host "work directory $work"

# --- helpers ---------------------------------------------------------------

function Invoke-Msiexec([string[]] $arguments, [string] $log) {
    $p = Start-Process msiexec.exe -ArgumentList ($arguments + @('/qn', '/norestart', '/l*v', "`"$log`"")) -Wait -PassThru
    return $p.ExitCode
}
# The installed Prewarm Agent products: Programs and Features' entries.
function Get-AgentProducts {
    $keys = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*', 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*'
    @(Get-ItemProperty $keys -ErrorAction SilentlyContinue | Where-Object { $_.PSObject.Properties['DisplayName'] -and $_.DisplayName -eq 'Prewarm Agent' })
}
function Install-Msi([string] $path, [string] $name) {
    $code = Invoke-Msiexec @('/i', "`"$path`"") "$work\msi-$name.log"
    Write-Host "msiexec /i $path -> $code"
    return $code
}
function Invoke-Admin([string[]] $arguments) {
    $out = & $Imds @arguments --admin-url "http://127.0.0.1:$AdminPort" --admin-token-file "$work\token" 2>&1
    return @{ Code = $LASTEXITCODE; Out = ($out -join "`n") }
}
# publish drops a publish-directory file: registration by address and the
# document, written under a dot name and renamed (docs/protocol.md).
function Publish([hashtable] $doc) {
    $body = @{ addresses = @('127.0.0.1'); config = $doc } | ConvertTo-Json -Depth 10
    $tmp = Join-Path "$work\publish" ".$id.json"
    [IO.File]::WriteAllText($tmp, $body)
    Move-Item -Force $tmp (Join-Path "$work\publish" "$id.json")
}
# Wait-Outcome waits for the agent's outcome of generation $gen
# (provisioned, partial-ready or failed, not a link event's report) in its
# status log, the history of every report: status.json holds only the
# latest, which a link event or a renewal reported after the outcome
# replaces. The log is read shared for write and delete (the agent appends
# to it and may rotate it); the latest outcome of $gen wins (a retry's).
function Read-StatusLog([string] $file) {
    $fs = [IO.File]::Open($file, 'Open', 'Read', [IO.FileShare]'ReadWrite, Delete')
    try { $text = (New-Object IO.StreamReader($fs)).ReadToEnd() } finally { $fs.Dispose() }
    foreach ($line in ($text -split "`n")) {
        if (-not $line.Trim()) { continue }
        try { $line | ConvertFrom-Json } catch { } # a line being written
    }
}
function Wait-Outcome([int] $gen) {
    $file = Join-Path $env:ProgramData 'Prewarm\status.jsonl'
    $deadline = (Get-Date).AddSeconds($WaitSeconds)
    while ((Get-Date) -lt $deadline) {
        if (Test-Path $file) {
            $r = @(Read-StatusLog $file | Where-Object { $_.generation -eq $gen -and -not $_.event -and $_.state -in 'provisioned', 'partial-ready', 'failed' }) | Select-Object -Last 1
            if ($r) { return $r }
        }
        Start-Sleep -Milliseconds 500
    }
    $last = if (Test-Path $file) { @(Read-StatusLog $file) | Select-Object -Last 1 | ConvertTo-Json -Compress -Depth 6 } else { 'none (no status log)' }
    throw "no outcome of generation $gen within $WaitSeconds s; the log's last report: $last"
}

$imdsProc = $null
$nic = $null
$dhcpBefore = $null
try {
    # --- MSI: upgrade, same version, downgrade (defect 10) -----------------
    if ($OlderMsi) {
        Check 'older MSI installs' ((Install-Msi $OlderMsi 'older') -eq 0)
        Check 'newer MSI installs over the older (exit 0)' ((Install-Msi $Msi 'newer') -eq 0)
        $p = @(Get-AgentProducts)
        Check 'one product after the upgrade' ($p.Count -eq 1) "found $($p.Count)"
        $newVersion = $p[0].DisplayVersion
        $code = Install-Msi $OlderMsi 'downgrade'
        Check 'older MSI over a newer one is refused (1603)' ($code -eq 1603) "exit $code"
        $p = @(Get-AgentProducts)
        Check 'the newer version stays, alone' ($p.Count -eq 1 -and $p[0].DisplayVersion -eq $newVersion) "found $($p | ForEach-Object DisplayVersion)"
        Check 'the downgrade log names the newer version' ((Select-String -Quiet -Path "$work\msi-downgrade.log" -Pattern 'A newer version of the Prewarm agent is installed'))
    } else {
        Check 'MSI installs' ((Install-Msi $Msi 'install') -eq 0)
    }
    if ($RebuiltMsi) {
        $before = @(Get-AgentProducts)[0].PSChildName
        Check 'a rebuild of the same version installs (exit 0)' ((Install-Msi $RebuiltMsi 'rebuilt') -eq 0)
        $p = @(Get-AgentProducts)
        Check 'same version: replaced, not side by side' ($p.Count -eq 1 -and $p[0].PSChildName -ne $before) "found $($p | ForEach-Object PSChildName)"
    }
    $kind = (Get-Item 'HKLM:\SYSTEM\CurrentControlSet\Services\EventLog\Application\prewarm-agent').GetValueKind('EventMessageFile')
    Check 'EventMessageFile is REG_EXPAND_SZ' ($kind -eq 'ExpandString') "is $kind"
    $svc = Get-Service $service
    Check 'the service is installed, automatic start' ($svc.StartType -eq 'Automatic')

    # --- the IMDS on loopback ---------------------------------------------
    $token = -join ((1..48) | ForEach-Object { '{0:x}' -f (Get-Random -Maximum 16) })
    [IO.File]::WriteAllText("$work\token", $token)
    $imdsArgs = @('serve', '--listen', "127.0.0.1:$Port", '--admin-listen', "127.0.0.1:$AdminPort",
        '--admin-token-file', "$work\token", '--admin-socket=', '--data-dir', "$work\data",
        '--publish-dir', "$work\publish", '--bind-interfaces=false', '--dialects', 'native', '--log-level', 'debug')
    $imdsProc = Start-Process $Imds -ArgumentList $imdsArgs -PassThru -NoNewWindow `
        -RedirectStandardOutput "$work\imds.out" -RedirectStandardError "$work\imds.err"
    Write-Host "prewarm-imds pid $($imdsProc.Id)"
    $up = $false
    for ($i = 0; $i -lt 60 -and -not $up; $i++) {
        try { Invoke-WebRequest -UseBasicParsing "http://127.0.0.1:$Port/" -TimeoutSec 2 | Out-Null; $up = $true }
        catch { if ($_.Exception.Response) { $up = $true } else { Start-Sleep -Milliseconds 500 } }
    }
    Check 'prewarm-imds serves on loopback' $up

    # The service's environment points the agent at it; restart to take it.
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$service"
    New-ItemProperty -Path $key -Name Environment -PropertyType MultiString -Force `
        -Value @("PREWARM_AGENT_IMDS_URL=http://127.0.0.1:$Port", 'PREWARM_AGENT_LOG_LEVEL=debug') | Out-Null
    Restart-Service $service
    Check 'the service runs' ((Get-Service $service).Status -eq 'Running')

    # --- generation 1: users, time zone, hostname, extra address ----------
    $zone = if ((Get-TimeZone).Id -eq 'Tokyo Standard Time') { 'Europe/Berlin' } else { 'Asia/Tokyo' }
    $winZone = if ($zone -eq 'Asia/Tokyo') { 'Tokyo Standard Time' } else { 'W. Europe Standard Time' }
    $hostname = 'prewarm-ci-' + (Get-Random -Minimum 1000 -Maximum 9999)
    $key1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f ci@prewarm'
    $doc = @{
        hostname = $hostname
        timezone = $zone
        users    = @(
            @{ name = 'prewarmci'; password = 'Pw-' + [guid]::NewGuid().ToString('N') },
            @{ name = 'prewarmkeys'; sshAuthorizedKeys = @($key1) }
        )
    }
    $extra = '192.0.2.77'
    $search = 'prewarm-ci.example'
    if (-not $SkipNetwork) {
        # The primary NIC, kept on its own address, gateway and name servers
        # (a runner must stay reachable), plus one extra address.
        $route = Get-NetRoute -DestinationPrefix '0.0.0.0/0' | Sort-Object RouteMetric | Select-Object -First 1
        $nic = Get-NetAdapter -InterfaceIndex $route.ifIndex
        $ip = Get-NetIPAddress -InterfaceIndex $nic.ifIndex -AddressFamily IPv4 | Where-Object { $_.PrefixOrigin -in 'Dhcp', 'Manual' } | Select-Object -First 1
        $dns = (Get-DnsClientServerAddress -InterfaceIndex $nic.ifIndex -AddressFamily IPv4).ServerAddresses
        $dhcpBefore = (Get-NetIPInterface -InterfaceIndex $nic.ifIndex -AddressFamily IPv4).Dhcp
        $doc.network = @{ interfaces = @(@{
                    mac           = $nic.MacAddress.Replace('-', ':').ToLower()
                    addresses     = @("$($ip.IPAddress)/$($ip.PrefixLength)", "$extra/32")
                    gateway4      = $route.NextHop
                    # A route of TEST-NET-2 with a metric (defect 2).
                    routes        = @(@{ to = '198.51.100.0/24'; via = $route.NextHop; metric = 100 })
                    nameservers   = @($dns)
                    searchDomains = @($search)
                }) }
    }
    Publish $doc
    $r = Wait-Outcome 1
    Check 'generation 1 provisioned' ($r.state -eq 'provisioned') "state $($r.state): $($r.error)"
    Check 'rebootRequired for the new computer name (reboot: never, the default)' ($r.rebootRequired -eq $true)
    $hostStep = @($r.steps | Where-Object name -eq 'hostname')
    Check 'the hostname step says rebootRequired' ($hostStep.Count -eq 1 -and $hostStep[0].rebootRequired -eq $true)
    Check 'no reboot step (reboot: never)' (@($r.steps | Where-Object name -eq 'reboot').Count -eq 0)
    $pending = (Get-ItemProperty 'HKLM:\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters').'NV Hostname'
    Check 'the computer name is pending' ($pending -eq $hostname) "NV Hostname is $pending"

    $u = Get-LocalUser -Name prewarmci -ErrorAction SilentlyContinue
    Check 'Get-LocalUser prewarmci' ($null -ne $u -and $u.Enabled)
    $k = Get-LocalUser -Name prewarmkeys -ErrorAction SilentlyContinue
    Check 'Get-LocalUser prewarmkeys (key-only, created with a random password)' ($null -ne $k -and $k.Enabled -and $k.PasswordRequired -and $null -ne $k.PasswordLastSet)
    $userProfile = (Get-CimInstance Win32_UserProfile | Where-Object SID -eq $k.SID.Value).LocalPath
    $ak = Join-Path "$userProfile" '.ssh\authorized_keys'
    Check 'prewarmkeys has its authorized_keys' ((Test-Path $ak) -and (Select-String -Quiet -SimpleMatch -Path $ak -Pattern 'ci@prewarm'))
    if (Test-Path $ak) {
        $acl = Get-Acl $ak
        Check 'authorized_keys owned by Administrators' ($acl.Owner -eq 'BUILTIN\Administrators') "owner $($acl.Owner)"
        $mine = @($acl.Access | Where-Object { $_.IdentityReference.Value -like '*\prewarmkeys' })
        # Write is WriteData, AppendData, WriteExtendedAttributes and
        # WriteAttributes; none of these bits is in read (0x120089).
        $writes = [Security.AccessControl.FileSystemRights]'Write, Delete, ChangePermissions, TakeOwnership'
        Check 'the user may read authorized_keys, not write it' ($mine.Count -eq 1 -and ($mine[0].FileSystemRights -band $writes) -eq 0) "$($mine | ForEach-Object FileSystemRights)"
        Check 'authorized_keys inherits nothing' ($acl.AreAccessRulesProtected)
    }
    $shared = Join-Path $env:ProgramData 'ssh\administrators_authorized_keys'
    Check 'no key in administrators_authorized_keys' (-not (Test-Path $shared) -or -not (Select-String -Quiet -SimpleMatch -Path $shared -Pattern 'ci@prewarm'))
    Check "Get-TimeZone is $winZone" ((Get-TimeZone).Id -eq $winZone) "is $((Get-TimeZone).Id)"
    if (-not $SkipNetwork) {
        $a = Get-NetIPAddress -InterfaceIndex $nic.ifIndex -IPAddress $extra -ErrorAction SilentlyContinue
        Check "Get-NetIPAddress $extra on $($nic.Name)" ($null -ne $a)
        if (Test-Path "$verify\network.ps1") {
            # The name servers per family and the search list too
            # (docs/windows.md counts them as verified here).
            & "$verify\network.ps1" -Mac $nic.MacAddress -Addresses "$($ip.IPAddress)/$($ip.PrefixLength)", "$extra/32" `
                -Route 198.51.100.0/24 -Via $route.NextHop -RouteMetric 100 -Dns $dns -Search $search
            Check 'network.ps1 (defects 1, 2)' ($LASTEXITCODE -eq 0)
        }
    }
    $st = Invoke-Admin @('status', $id)
    Check 'the IMDS has the provisioned report' ($st.Code -eq 0 -and $st.Out -match 'provisioned') $st.Out

    # --- generation 2: a name Windows cannot take (defect 7) ---------------
    $other = if ($zone -eq 'Asia/Tokyo') { 'America/New_York' } else { 'Asia/Tokyo' }
    Publish @{ timezone = $other; users = @(@{ name = 'abcdefghijklmnopqrstu' }) }
    $r = Wait-Outcome 2
    Check 'a 21-character user name fails the generation' ($r.state -eq 'failed' -and $r.error -match 'users\[0\]\.name' -and $r.error -match '20') "state $($r.state): $($r.error)"
    Check 'no step ran for it' (-not $r.steps)
    Check 'its time zone was not applied' ((Get-TimeZone).Id -eq $winZone) "is $((Get-TimeZone).Id)"
    Check 'no account was created' ($null -eq (Get-LocalUser -Name 'abcdefghijklmnopqrstu' -ErrorAction SilentlyContinue))

    # --- generation 3: the NIC back to DHCP (defect 2, static -> DHCP) -----
    if (-not $SkipNetwork) {
        Publish @{ network = @{ interfaces = @(@{ mac = $nic.MacAddress.Replace('-', ':').ToLower(); dhcp4 = $true }) } }
        $r = Wait-Outcome 3
        Check 'generation 3 (dhcp4: true) provisioned' ($r.state -eq 'provisioned') "state $($r.state): $($r.error)"
        $dhcp = (Get-NetIPInterface -InterfaceIndex $nic.ifIndex -AddressFamily IPv4).Dhcp
        Check 'the NIC is on DHCP again' ($dhcp -eq 'Enabled') "Dhcp is $dhcp"
        Check "the agent's extra address $extra is gone" ($null -eq (Get-NetIPAddress -InterfaceIndex $nic.ifIndex -IPAddress $extra -ErrorAction SilentlyContinue))
    }

    # --- the service (defect 9) -------------------------------------------
    if (Test-Path "$verify\service.ps1") {
        & "$verify\service.ps1"
        Check 'service.ps1 (defect 9)' ($LASTEXITCODE -eq 0)
    }
} catch {
    Write-Host "FAIL the run stopped: $_"
    Write-Host $_.ScriptStackTrace
    $failed++
} finally {
    Write-Host '--- agent events ---'
    Get-WinEvent -FilterHashtable @{ LogName = 'Application'; ProviderName = 'prewarm-agent' } -MaxEvents 60 -ErrorAction SilentlyContinue |
        Sort-Object TimeCreated | ForEach-Object { Write-Host "$($_.TimeCreated.ToString('HH:mm:ss.fff')) $($_.LevelDisplayName) $($_.Message)" }
    if (-not $KeepInstalled) {
        foreach ($p in @(Get-AgentProducts)) {
            $code = Invoke-Msiexec @('/x', $p.PSChildName) "$work\msi-uninstall.log"
            Check "uninstall $($p.DisplayVersion)" ($code -eq 0) "exit $code"
        }
        Check 'the service is gone after uninstall' ($null -eq (Get-Service $service -ErrorAction SilentlyContinue))
    }
    if ($imdsProc) {
        Stop-Process -Id $imdsProc.Id -ErrorAction SilentlyContinue
        Write-Host '--- prewarm-imds ---'
        Get-Content "$work\imds.err" -Tail 40 -ErrorAction SilentlyContinue | ForEach-Object { Write-Host $_ }
    }
    if ($nic -and $dhcpBefore -eq 'Enabled') {
        Remove-NetIPAddress -InterfaceIndex $nic.ifIndex -IPAddress $extra -Confirm:$false -ErrorAction SilentlyContinue
        Set-NetIPInterface -InterfaceIndex $nic.ifIndex -AddressFamily IPv4 -Dhcp Enabled -ErrorAction SilentlyContinue
        Set-DnsClientServerAddress -InterfaceIndex $nic.ifIndex -ResetServerAddresses -ErrorAction SilentlyContinue
    }
    foreach ($n in 'prewarmci', 'prewarmkeys') { Remove-LocalUser -Name $n -ErrorAction SilentlyContinue }
}
exit (Get-ChecksExitCode)
