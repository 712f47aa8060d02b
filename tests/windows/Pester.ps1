# Run by tests/run-all.sh windows in PowerShell 7 for win-x64 (tests/windows/PwshHost) under
# Wine: installs DefenderPackage from the package packaging/pack.sh wrote, as users do
# (Install-PSResource from dist/ registered as a repository), checks that a new import by name
# loads the package's runtimes/win-x64/native/defender.dll, then runs the module's Pester tests
# given (tests/pester) against that installed module and the simulator built for Windows.
param(
    [Parameter(Mandatory)] [string] $Dist,
    [Parameter(Mandatory)] [string] $Version,
    [Parameter(Mandatory)] [string] $Simulator,
    [Parameter(Mandatory)] [string[]] $TestPath
)
$ErrorActionPreference = 'Stop'
# No progress bars from PSResourceGet in the suite's log (the tests set their own preference).
$ProgressPreference = 'SilentlyContinue'
$TestPath = $TestPath -split ','
"PowerShell $($PSVersionTable.PSVersion) ($($PSVersionTable.PSEdition)) on $($PSVersionTable.OS)"

Register-PSResourceRepository -Name DefenderDist -Uri $Dist -Trusted
try {
    Install-PSResource DefenderPackage -Repository DefenderDist -Version $Version -Scope CurrentUser -TrustRepository -Reinstall
} finally {
    Unregister-PSResourceRepository -Name DefenderDist
}
$installed = Get-InstalledPSResource -Name DefenderPackage -Version $Version -Scope CurrentUser
$moduleBase = [IO.Path]::Combine($installed.InstalledLocation, 'DefenderPackage', $Version)
"installed DefenderPackage $($installed.Version) into $moduleBase"

# A new PowerShell imports it by name and loads the packaged Windows library.
$check = & "$PSHOME\pwsh.exe" -NoProfile -NonInteractive -Command '
    Import-Module DefenderPackage
    "{0}|{1}|{2}" -f (Get-Module DefenderPackage).ModuleBase, [Defender.DefenderLibrary]::Version, [Defender.DefenderLibrary]::LoadedPath'
if ($LASTEXITCODE -ne 0) { throw "Import-Module DefenderPackage failed: $check" }
$base, $libraryVersion, $loaded = "$check".Trim() -split '\|'
$expected = [IO.Path]::Combine($moduleBase, 'runtimes', 'win-x64', 'native', 'defender.dll')
if ($base -ne $moduleBase -or $libraryVersion -ne $Version -or $loaded -ne $expected) {
    throw "Import-Module DefenderPackage by name found '$base' and loaded '$loaded' (version $libraryVersion); expected $expected, $Version"
}
"Import-Module DefenderPackage by name: version $libraryVersion, $loaded"

# The tests import the module by path, which needs a folder named as the module (the installed
# one is named by its version): the installed files, moved there, so that a test that looks the
# module up by name finds that one.
$tested = Join-Path ([IO.Path]::GetTempPath()) "defender-installed-$PID\DefenderPackage"
Copy-Item -LiteralPath $moduleBase -Destination $tested -Recurse
Uninstall-PSResource DefenderPackage -Version $Version -Scope CurrentUser
$env:DEFENDER_TEST_MODULE = $tested
$env:DEFENDER_TEST_SIMULATOR = $Simulator
# Tagged CngCertificates: tests that make RSA keys and certificates with .NET, whose CNG calls
# Wine 8's bcrypt refuses (tests/windows/suite.sh says so in its output).
& (Join-Path $PSScriptRoot '../pester/Invoke-Tests.ps1') -Path $TestPath -ExcludeTag CngCertificates
exit $LASTEXITCODE
