# What the Pester suites share: a defender-simulator process on loopback, its control API, and
# checks that text holds no secret. The module under test is the one powershell/build.sh laid
# out in <target>/powershell/DefenderPackage (tests/run-all.sh powershell builds it first), or
# the one in $env:DEFENDER_TEST_MODULE, and the simulator <target>/debug/defender-simulator, or
# $env:DEFENDER_TEST_SIMULATOR (the windows suite: the module installed from the package and the
# simulator built for Windows, under Wine).

Set-StrictMode -Version 3.0

$script:RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
$script:TargetDirectory = if ($env:CARGO_TARGET_DIR) { $env:CARGO_TARGET_DIR } else { Join-Path $script:RepoRoot 'target' }
$script:ModulePath = if ($env:DEFENDER_TEST_MODULE) { $env:DEFENDER_TEST_MODULE } else { Join-Path $script:TargetDirectory 'powershell/DefenderPackage' }

# The simulator's own app; its secret is a published constant of the simulator.
$script:SimulatorSecret = 'simulator-secret'

function Get-DefenderModulePath { $script:ModulePath }

function Get-TestTargetDirectory { $script:TargetDirectory }

function Start-TestSimulator {
    # Starts target/debug/defender-simulator (rate limits off, the given clock scale and package
    # size) and returns its ready line with the process: stop it with Stop-TestSimulator.
    param(
        [double] $ClockScale = 60,
        [string] $PackageSize = '1MiB',
        # Sample devices (--seed-machines): see simulator/README.md.
        [int] $SeedMachines = 0,
        # An Azure Blob storage account for live response results (Start-TestAzurite's BlobAccount).
        [string] $BlobEndpoint
    )
    $executable = Join-Path $script:TargetDirectory 'debug/defender-simulator'
    # Not $IsWindows nor ArgumentList: Windows PowerShell 5.1 (CI) has neither.
    if ([Environment]::OSVersion.Platform -eq 'Win32NT') { $executable += '.exe' }
    if ($env:DEFENDER_TEST_SIMULATOR) { $executable = $env:DEFENDER_TEST_SIMULATOR }
    $start = [Diagnostics.ProcessStartInfo]::new($executable)
    $start.Arguments = "--rate-limit off --clock-scale $ClockScale --package-size $PackageSize --seed-machines $SeedMachines"
    if ($BlobEndpoint) { $start.Arguments += " --blob-endpoint $BlobEndpoint" }
    $start.RedirectStandardOutput = $true
    $start.UseShellExecute = $false
    $start.Environment['RUST_LOG'] = 'warn'
    $process = [Diagnostics.Process]::Start($start)
    $line = $process.StandardOutput.ReadLine()
    if (-not $line) {
        $process.WaitForExit()
        throw "defender-simulator exited ($($process.ExitCode)) without its ready line; see its messages above"
    }
    $ready = $line | ConvertFrom-Json
    $ready | Add-Member -NotePropertyName Process -NotePropertyValue $process
    $ready | Add-Member -NotePropertyName ClockScale -NotePropertyValue $ClockScale
    $ready
}

function Stop-TestSimulator {
    param([Parameter(Mandatory)] $Simulator)
    if (-not $Simulator.Process.HasExited) {
        $Simulator.Process.Kill()
        $Simulator.Process.WaitForExit()
    }
    $Simulator.Process.Dispose()
}

function Start-TestAzurite {
    # Azurite (the Azure Storage emulator) for live response results: the one tests/run-all.sh
    # started ($env:DEFENDER_AZURITE_BLOB_ENDPOINT), else its blob service started here on a free
    # loopback port with in-memory persistence (the npm package run-all.sh installs: the
    # azurite-blob of $env:DEFENDER_AZURITE, else the tools cache's). Returns its account's URL
    # (BlobAccount: http://127.0.0.1:port/devstoreaccount1) and the process it started, if any:
    # stop it with Stop-TestAzurite.
    if ($env:DEFENDER_AZURITE_BLOB_ENDPOINT) {
        return [pscustomobject]@{ Process = $null; BlobAccount = $env:DEFENDER_AZURITE_BLOB_ENDPOINT }
    }
    $cache = if ($env:XDG_CACHE_HOME) { $env:XDG_CACHE_HOME } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.cache' }
    $executable = if ($env:DEFENDER_AZURITE) { $env:DEFENDER_AZURITE } else { Join-Path $cache 'defender-package/tools/azurite/node_modules/.bin/azurite-blob' }
    if (-not (Test-Path -LiteralPath $executable)) {
        throw "Azurite is not at $($executable): tests/run-all.sh installs it (npm), or set DEFENDER_AZURITE to its azurite-blob"
    }
    $start = [Diagnostics.ProcessStartInfo]::new($executable)
    $start.Arguments = '--blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --skipApiVersionCheck --loose'
    $start.WorkingDirectory = [IO.Path]::GetTempPath()
    $start.RedirectStandardOutput = $true
    $start.UseShellExecute = $false
    $process = [Diagnostics.Process]::Start($start)
    while ($null -ne ($line = $process.StandardOutput.ReadLine())) {
        if ($line -match 'listens on (http://\S+)') {
            # Its further output is not read: drained, so that it never blocks on a full pipe.
            $null = $process.StandardOutput.BaseStream.CopyToAsync([IO.Stream]::Null)
            return [pscustomobject]@{ Process = $process; BlobAccount = $Matches[1].TrimEnd('/') + '/devstoreaccount1' }
        }
    }
    throw 'Azurite exited without saying where it listens'
}

function Stop-TestAzurite {
    param([Parameter(Mandatory)] $Azurite)
    if (-not $Azurite.Process) { return }
    if (-not $Azurite.Process.HasExited) {
        $Azurite.Process.Kill()
        $Azurite.Process.WaitForExit()
    }
    $Azurite.Process.Dispose()
}

function New-ChildPowerShell {
    # A new process of the PowerShell running the tests (pwsh, or powershell.exe under Windows
    # PowerShell 5.1) that runs $Command, its output redirected. 5.1 has neither $IsWindows nor
    # ProcessStartInfo.ArgumentList, so the command goes as -EncodedCommand (no quoting per OS).
    param([Parameter(Mandatory)] [string] $Command)
    $name = if ($PSVersionTable.PSEdition -eq 'Desktop') { 'powershell.exe' }
    elseif ([Environment]::OSVersion.Platform -eq 'Win32NT') { 'pwsh.exe' }
    else { 'pwsh' }
    $start = [Diagnostics.ProcessStartInfo]::new((Join-Path $PSHOME $name))
    $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($Command))
    $start.Arguments = "-NoProfile -NonInteractive -EncodedCommand $encoded"
    $start.UseShellExecute = $false
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $start
}

function Invoke-SimulatorControl {
    # A call of the simulator's control API (/_sim/...), JSON both ways.
    param(
        [Parameter(Mandatory)] $Simulator,
        [Parameter(Mandatory)] [string] $Path,
        [string] $Method = 'Post',
        [object] $Body
    )
    $parameters = @{ Method = $Method; Uri = "$($Simulator.base_url)/_sim/$Path"; UseBasicParsing = $true }
    if ($PSBoundParameters.ContainsKey('Body')) {
        $parameters.Body = $Body | ConvertTo-Json -Depth 5 -Compress
        $parameters.ContentType = 'application/json'
    }
    # Not Invoke-RestMethod: it writes an empty JSON array as one object instead of nothing.
    $content = (Invoke-WebRequest @parameters).Content
    if ($content) {
        $content | ConvertFrom-Json
    }
}

function New-SimulatedAction {
    # Creates a machine action (POST /_sim/actions, spec as documented there); returns its id.
    param([Parameter(Mandatory)] $Simulator, [hashtable] $Spec = @{})
    (Invoke-SimulatorControl -Simulator $Simulator -Path actions -Body $Spec).id
}

function Add-SimulatorFault {
    param([Parameter(Mandatory)] $Simulator, [Parameter(Mandatory)] [hashtable] $Rule)
    $null = Invoke-SimulatorControl -Simulator $Simulator -Path faults -Body $Rule
}

function Get-SimulatorRequest {
    # The simulator's request log, optionally of one endpoint (token, get_package_uri, download, ...).
    param([Parameter(Mandatory)] $Simulator, [string] $Endpoint)
    $query = if ($Endpoint) { "?endpoint=$Endpoint" } else { '' }
    @(Invoke-SimulatorControl -Simulator $Simulator -Method Get -Path "requests$query")
}

function Get-SimulatedPackageHash {
    # The SHA-256 of the action's package exactly as the download host serves it.
    param([Parameter(Mandatory)] $Simulator, [Parameter(Mandatory)] [string] $ActionId)
    $bytes = (Invoke-WebRequest -Uri "$($Simulator.base_url)/_sim/actions/$ActionId/package" -UseBasicParsing).Content
    $sha256 = [Security.Cryptography.SHA256]::Create()
    try {
        ([BitConverter]::ToString($sha256.ComputeHash([byte[]]$bytes)) -replace '-').ToLowerInvariant()
    } finally {
        $sha256.Dispose()
    }
}

function Get-SimulatorConnectParameters {
    # Connect-DefenderApi parameters for the simulator's app, secret sign-in, clocks matched.
    param([Parameter(Mandatory)] $Simulator)
    @{
        TenantId     = $Simulator.tenant_id
        ClientId     = $Simulator.client_id
        ClientSecret = ConvertTo-SecureString $script:SimulatorSecret -AsPlainText -Force
        BaseUri      = $Simulator.base_url
        Option       = (Get-SimulatorOption -Simulator $Simulator)
    }
}

function Get-SimulatorOption {
    # The -Option keys that point the library at the simulator.
    param([Parameter(Mandatory)] $Simulator)
    @{ authority_url = $Simulator.base_url; rate_limit = 'off'; clock_scale = $Simulator.ClockScale }
}

function New-TestFolder {
    $folder = Join-Path ([IO.Path]::GetTempPath()) "defender-pester-$([guid]::NewGuid())"
    (New-Item -ItemType Directory -Path $folder).FullName
}

function Assert-NoSecret {
    # Fails when $Text holds a secret: the simulator's client secret, one of $Secret, a bearer
    # token, or the value of a link's token= query.
    param([AllowEmptyString()] [string] $Text, [string[]] $Secret = @())
    foreach ($value in @($script:SimulatorSecret) + $Secret) {
        if ($value -and $Text.Contains($value)) { throw "a secret leaked into: $Text" }
    }
    if ($Text -match 'Bearer\s+\S') { throw "a bearer token leaked into: $Text" }
    if ($Text -match 'token=(?!REDACTED)[^&\s]') { throw "a link's token leaked into: $Text" }
}

function New-TestCertificate {
    # A self-signed RSA certificate with its private key, for an app's certificate sign-in.
    param([string] $Subject = 'CN=defender-package tests')
    $key = [Security.Cryptography.RSA]::Create(2048)
    $request = [Security.Cryptography.X509Certificates.CertificateRequest]::new(
        $Subject, $key, [Security.Cryptography.HashAlgorithmName]::SHA256, [Security.Cryptography.RSASignaturePadding]::Pkcs1)
    $request.CreateSelfSigned([DateTimeOffset]::UtcNow.AddDays(-1), [DateTimeOffset]::UtcNow.AddDays(1))
}

function Register-SimulatorApp {
    # Registers an app with the simulator: a client secret or a certificate (PEM), in the
    # simulator's tenant or another one (which it then knows).
    param(
        [Parameter(Mandatory)] $Simulator,
        [Parameter(Mandatory)] [string] $ClientId,
        [string] $ClientSecret,
        [Security.Cryptography.X509Certificates.X509Certificate2] $Certificate,
        [string] $TenantId = $Simulator.tenant_id
    )
    $app = @{ tenant_id = $TenantId; client_id = $ClientId }
    if ($ClientSecret) { $app.client_secret = $ClientSecret }
    if ($Certificate) { $app.certificate_pem = $Certificate.ExportCertificatePem() }
    $null = Invoke-SimulatorControl -Simulator $Simulator -Path apps -Body $app
}
