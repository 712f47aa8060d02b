# Run by Install.Tests.ps1 in a new pwsh with the default module path: imports the installed
# DefenderPackage by name, downloads one package from the simulator, and prints as its last line
# one JSON object with what the test checks. The client secret comes in DEFENDER_TEST_CLIENT_SECRET.
param(
    [Parameter(Mandatory)] [string] $BaseUri,
    [Parameter(Mandatory)] [string] $TenantId,
    [Parameter(Mandatory)] [string] $ClientId,
    [Parameter(Mandatory)] [string] $ActionId,
    [Parameter(Mandatory)] [string] $Path
)
$ErrorActionPreference = 'Stop'
Import-Module DefenderPackage
$secret = ConvertTo-SecureString $env:DEFENDER_TEST_CLIENT_SECRET -AsPlainText -Force
Connect-DefenderApi -TenantId $TenantId -ClientId $ClientId -ClientSecret $secret -BaseUri $BaseUri `
    -Option @{ authority_url = $BaseUri; rate_limit = 'off' }
$package = Save-DefenderInvestigationPackage -ActionId $ActionId -Path $Path -PassThru
$module = Get-Module DefenderPackage
[pscustomobject]@{
    Path           = $package.Path
    Sha256         = $package.Sha256
    ModuleBase     = $module.ModuleBase
    ModuleVersion  = $module.Version.ToString()
    LibraryVersion = [Defender.DefenderLibrary]::Version
    LibraryPath    = [Defender.DefenderLibrary]::LoadedPath
} | ConvertTo-Json -Compress
