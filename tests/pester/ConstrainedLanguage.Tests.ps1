# The module on a hardened admin workstation: a runspace in ConstrainedLanguage mode (what
# AppLocker and WDAC policies impose) imports the built module by name and runs the main job
# against the simulator. Add-Type is refused there, so nothing may be compiled at import.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $simulator = Start-TestSimulator
    $modulePath = Get-DefenderModulePath
    # The folder that holds the built DefenderPackage folder, for Import-Module by name.
    $modules = Split-Path $modulePath -Parent

    function Invoke-Constrained {
        # Runs $Script in a new runspace whose language mode is ConstrainedLanguage, with
        # PSModulePath holding only the built module's parent folder (and PowerShell's own
        # modules); returns its output, and its errors as a terminating failure.
        param([string] $Script, [hashtable] $Parameter = @{})
        $state = [initialsessionstate]::CreateDefault2()
        $state.LanguageMode = 'ConstrainedLanguage'
        $saved = $env:PSModulePath
        $env:PSModulePath = $modules + [IO.Path]::PathSeparator + (Join-Path $PSHOME 'Modules')
        $runspace = [runspacefactory]::CreateRunspace($state)
        try {
            $runspace.Open()
            $shell = [powershell]::Create()
            $shell.Runspace = $runspace
            $null = $shell.AddScript($Script)
            foreach ($name in $Parameter.Keys) { $null = $shell.AddParameter($name, $Parameter[$name]) }
            $output = $shell.Invoke()
            [pscustomobject]@{ Output = $output; Errors = @($shell.Streams.Error) }
        } finally {
            $env:PSModulePath = $saved
            $runspace.Dispose()
        }
    }
}

AfterAll {
    Stop-TestSimulator -Simulator $simulator
}

Describe 'In a ConstrainedLanguage runspace' {
    It 'the runspace really is constrained: Add-Type is refused there' {
        $result = Invoke-Constrained '$ExecutionContext.SessionState.LanguageMode; Add-Type -TypeDefinition "public class DefenderProbe {}"'
        $result.Output[0] | Should -Be 'ConstrainedLanguage'
        $result.Errors.Count | Should -Be 1
        "$($result.Errors[0])" | Should -BeLike '*language mode*'
    }

    It 'imports the module by name and connects, gets a link, looks up the action and saves its package' {
        $id = New-SimulatedAction -Simulator $simulator
        $folder = New-TestFolder
        $script = @'
param($TenantId, $ClientId, $BaseUri, $Option, $ActionId, $Folder)
Import-Module DefenderPackage -ErrorAction Stop
$secret = ConvertTo-SecureString 'simulator-secret' -AsPlainText -Force
Connect-DefenderApi -TenantId $TenantId -ClientId $ClientId -ClientSecret $secret -BaseUri $BaseUri -Option $Option -ErrorAction Stop
$ExecutionContext.SessionState.LanguageMode
(Get-Module DefenderPackage).Path
(Get-DefenderPackageUri -ActionId $ActionId -ErrorAction Stop).Uri
(Get-DefenderMachineAction -ActionId $ActionId -ErrorAction Stop).status
Save-DefenderInvestigationPackage -ActionId $ActionId -Path $Folder -PassThru -ErrorAction Stop
Disconnect-DefenderApi
'@
        $result = Invoke-Constrained $script @{
            TenantId = $simulator.tenant_id; ClientId = $simulator.client_id; BaseUri = $simulator.base_url
            Option   = (Get-SimulatorOption -Simulator $simulator); ActionId = $id; Folder = $folder
        }

        $result.Errors | Should -BeNullOrEmpty
        $language, $path, $uri, $status, $package = $result.Output
        "$language" | Should -Be 'ConstrainedLanguage'
        "$path" | Should -Be (Join-Path $modulePath 'DefenderPackage.dll') -Because 'it was found by name on PSModulePath'
        "$uri" | Should -BeLike "$($simulator.download_url)/safedownload/*.zip?token=*"
        "$status" | Should -Be 'Succeeded'
        $package.ActionId | Should -Be $id
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)
    }
}
