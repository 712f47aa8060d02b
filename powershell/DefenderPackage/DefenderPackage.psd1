@{
    # The cmdlets and the C# binding, compiled ahead of time (powershell/src): nothing is compiled
    # at import. Importing loads the native library from runtimes/<rid>/native/.
    RootModule           = 'DefenderPackage.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '624f6923-108c-4c85-9e6a-490dbb495eeb'
    Author               = 'defender-package maintainers'
    CompanyName          = 'defender-package'
    Copyright            = '(c) defender-package maintainers. MIT License.'
    Description          = 'Collect and download Microsoft Defender for Endpoint investigation packages, and files and script output off devices with Live Response, through the defender native library: sign-in, collection, waiting, rate limits and atomic, verified downloads.'
    PowerShellVersion    = '5.1'
    # Windows PowerShell 5.1 needs .NET Framework 4.7.2 or later (netstandard2.0).
    DotNetFrameworkVersion = '4.7.2'
    CompatiblePSEditions = @('Core', 'Desktop')
    FormatsToProcess     = @('DefenderPackage.Format.ps1xml')
    FunctionsToExport    = @()
    CmdletsToExport      = @(
        'Connect-DefenderApi'
        'Disconnect-DefenderApi'
        'Get-DefenderConnection'
        'Get-DefenderMachine'
        'Get-DefenderMachineAction'
        'Get-DefenderPackageUri'
        'Save-DefenderInvestigationPackage'
        'Start-DefenderInvestigationPackageCollection'
        'Stop-DefenderMachineAction'
        'Wait-DefenderMachineAction'
        'Invoke-DefenderLiveResponse'
        'Save-DefenderLiveResponseFile'
        'Save-DefenderLiveResponseResult'
        'Invoke-DefenderLiveResponseScript'
        'Get-DefenderLibraryFile'
        'Publish-DefenderLibraryFile'
        'Remove-DefenderLibraryFile'
    )
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('Defender', 'MDE', 'DefenderForEndpoint', 'Security', 'Forensics', 'IncidentResponse', 'InvestigationPackage', 'LiveResponse')
            LicenseUri = 'https://opensource.org/licenses/MIT'
            # The project (a placeholder until it is published, as in Cargo.toml); each command's
            # HelpUri is its section of docs/powershell.md there.
            ProjectUri = 'https://example.invalid/defender-package'
        }
    }
}
