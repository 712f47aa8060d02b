@{
    RootModule           = 'DefenderPackage.psm1'
    RequiredAssemblies   = @('DefenderPackage.dll')
    ModuleVersion        = '0.1.0'
    GUID                 = '624f6923-108c-4c85-9e6a-490dbb495eeb'
    Author               = 'defender-package maintainers'
    CompanyName          = 'defender-package'
    Copyright            = '(c) defender-package maintainers. MIT License.'
    Description          = 'Collect and download Microsoft Defender for Endpoint investigation packages through the defender native library: sign-in, collection, waiting, rate limits and atomic, verified downloads.'
    PowerShellVersion    = '5.1'
    CompatiblePSEditions = @('Core', 'Desktop')
    FormatsToProcess     = @('DefenderPackage.Format.ps1xml')
    FunctionsToExport    = @(
        'Connect-DefenderApi'
        'Disconnect-DefenderApi'
        'Get-DefenderMachineAction'
        'Get-DefenderPackageUri'
        'Save-DefenderInvestigationPackage'
        'Start-DefenderInvestigationPackageCollection'
        'Wait-DefenderMachineAction'
    )
    CmdletsToExport      = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('Defender', 'MDE', 'DefenderForEndpoint', 'Security', 'Forensics', 'IncidentResponse', 'InvestigationPackage')
            LicenseUri = 'https://opensource.org/licenses/MIT'
        }
    }
}
