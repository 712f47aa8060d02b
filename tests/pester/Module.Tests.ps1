# The module itself: its manifest, its help, and where it loads the native library from.

BeforeDiscovery {
    $manifest = Import-PowerShellDataFile (Join-Path $PSScriptRoot '../../powershell/DefenderPackage/DefenderPackage.psd1')
    $exported = $manifest.CmdletsToExport | ForEach-Object { @{ Name = $_ } }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $modulePath = Get-DefenderModulePath
    Import-Module $modulePath -Force

    function Invoke-ChildPwsh {
        # Runs $Command in a new pwsh process (a fresh process has not loaded the native library
        # yet), without CARGO_TARGET_DIR; returns its exit code and all it printed.
        param([string] $Command)
        $start = New-ChildPowerShell -Command $Command
        $start.Environment.Remove('CARGO_TARGET_DIR')
        $start.Environment['NO_COLOR'] = '1'
        $process = [Diagnostics.Process]::Start($start)
        $errors = $process.StandardError.ReadToEndAsync()
        $output = $process.StandardOutput.ReadToEnd()
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; Output = $output + $errors.Result }
    }

    function Copy-ModuleElsewhere {
        # A copy of the built module outside the target dir, without its runtimes/ folder, so no
        # native library is beside it.
        $copy = Join-Path (New-TestFolder) 'DefenderPackage'
        Copy-Item -Path $modulePath -Destination $copy -Recurse
        Remove-Item -LiteralPath (Join-Path $copy 'runtimes') -Recurse
        $copy
    }
}

AfterAll {
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'The manifest' {
    It 'passes Test-ModuleManifest and names the editions and version it supports' {
        $manifest = Test-ModuleManifest -Path (Join-Path $modulePath 'DefenderPackage.psd1') -ErrorAction Stop
        $manifest.PowerShellVersion | Should -Be ([version]'5.1')
        $manifest.CompatiblePSEditions | Should -Be @('Core', 'Desktop')
        $manifest.RootModule | Should -Be 'DefenderPackage.dll'
        $manifest.Version | Should -Be ([Defender.DefenderLibrary]::Version) -Because 'one version everywhere: the crate''s'
    }

    It 'is one compiled assembly: binary cmdlets, no script and nothing compiled at import' {
        $module = Get-Module DefenderPackage
        $module.ModuleType | Should -Be 'Binary'
        @(Get-ChildItem -LiteralPath $modulePath -Recurse -Include '*.ps1', '*.psm1', '*.cs').Count | Should -Be 0
        [Defender.DefenderClient].Assembly | Should -Be ([Defender.PowerShell.Commands.ConnectDefenderApiCommand].Assembly)
        [IO.Path]::GetFileName([Defender.DefenderClient].Assembly.Location) | Should -Be 'DefenderPackage.dll'
    }

    It 'exports exactly the commands it lists, each with an approved verb' {
        $commands = Get-Command -Module DefenderPackage
        $commands.CommandType | Sort-Object -Unique | Should -Be 'Cmdlet'
        $commands.Name | Sort-Object | Should -Be @(
            'Connect-DefenderApi', 'Disconnect-DefenderApi', 'Get-DefenderConnection', 'Get-DefenderLibraryFile', 'Get-DefenderMachine',
            'Get-DefenderMachineAction', 'Get-DefenderPackageUri', 'Invoke-DefenderLiveResponse', 'Invoke-DefenderLiveResponseScript',
            'Publish-DefenderLibraryFile', 'Remove-DefenderLibraryFile', 'Save-DefenderInvestigationPackage', 'Save-DefenderLiveResponseFile', 'Save-DefenderLiveResponseResult',
            'Start-DefenderInvestigationPackageCollection', 'Stop-DefenderMachineAction', 'Wait-DefenderMachineAction')
        $approved = (Get-Verb).Verb
        foreach ($command in $commands) {
            $command.Verb | Should -BeIn $approved -Because "$($command.Name) uses an approved verb"
        }
    }
}

Describe 'Help of <Name>' -ForEach $exported {
    BeforeAll {
        $help = Get-Help $Name -Full
        $command = Get-Command $Name
    }

    It 'has a synopsis, a description and examples' {
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -BeLike "*$Name*" -Because 'the synopsis is written, not generated from the syntax'
        ($help.Description.Text -join "`n") | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterThan 0
        foreach ($example in $help.Examples.Example) {
            $example.Code | Should -Match $Name
            ($example.Remarks.Text -join '') | Should -Not -BeNullOrEmpty -Because 'each example says what it does'
        }
    }

    It 'shows its examples with Get-Help -Examples, from the MAML help beside the assembly' {
        $examples = Get-Help $Name -Examples | Out-String -Width 200
        $examples | Should -Match 'Example 1'
        foreach ($example in $help.Examples.Example) {
            $examples | Should -Match ([regex]::Escape(($example.Code -split "`n")[0].Trim()))
        }
        (Get-Command $Name).HelpFile | Should -BeLike '*DefenderPackage.dll-Help.xml'
        Test-Path -LiteralPath (Join-Path $modulePath 'en-US/DefenderPackage.dll-Help.xml') | Should -BeTrue
    }

    It 'has its online help in the project''s PowerShell guide (HelpUri, and the first related link)' {
        $projectUri = (Import-PowerShellDataFile (Join-Path $modulePath 'DefenderPackage.psd1')).PrivateData.PSData.ProjectUri
        $command.HelpUri | Should -Be "$projectUri/docs/powershell.md#$($Name.ToLowerInvariant())"
        $help.relatedLinks.navigationLink[0].uri | Should -Be $command.HelpUri
        $guide = Get-Content -Raw -LiteralPath (Join-Path $PSScriptRoot '../../docs/powershell.md')
        $guide | Should -Match "(?m)^#+ ``?$Name``?\s*$" -Because 'the guide has the section the link points to'
    }

    It 'shows -WhatIf and -Confirm in its syntax when it supports them, and which parameters each set requires' {
        $syntax = ($help.syntax | Out-String -Width 1000) -replace '\s+', ' '
        if ($command.Parameters.ContainsKey('WhatIf')) {
            $syntax | Should -BeLike '*`[-WhatIf`] `[-Confirm`]*'
        }
        foreach ($set in $command.ParameterSets) {
            $item = @($help.syntax.syntaxItem)[[array]::IndexOf(@($command.ParameterSets | Sort-Object { -not $_.IsDefault }), $set)]
            foreach ($parameter in $set.Parameters | Where-Object { $_.Name -in $item.parameter.name }) {
                ($item.parameter | Where-Object name -eq $parameter.Name).required | Should -Be $parameter.IsMandatory.ToString().ToLowerInvariant() -Because "-$($parameter.Name) in the set $($set.Name)"
            }
        }
    }

    It 'documents every parameter' {
        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
        $documented = @($help.Parameters.Parameter | Where-Object { ($_.Description.Text -join '').Trim() }).Name
        foreach ($parameter in $command.Parameters.Keys | Where-Object { $_ -notin $common }) {
            $parameter | Should -BeIn $documented -Because "$Name -$parameter needs a description"
        }
    }
}

Describe 'The help' {
    It 'is what powershell/help/Build-Help.ps1 writes from the texts and the cmdlets (run it after changing either)' {
        $written = Join-Path (New-TestFolder) 'DefenderPackage.dll-Help.xml'
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddCommand((Join-Path $PSScriptRoot '../../powershell/help/Build-Help.ps1')).AddParameter('ModulePath', $modulePath).AddParameter('OutFile', $written)
            $shell.Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
        } finally {
            $shell.Dispose()
        }
        $committed = Get-Content -Raw -LiteralPath (Join-Path $PSScriptRoot '../../powershell/DefenderPackage/en-US/DefenderPackage.dll-Help.xml')
        (Get-Content -Raw -LiteralPath $written) | Should -BeExactly $committed
    }

    It 'has an about_DefenderPackage topic: connections, pipelines, errors, unattended sign-in' {
        $topic = Get-Help about_DefenderPackage | Out-String
        $topic | Should -BeLike '*about_DefenderPackage*'
        foreach ($subject in 'CONNECTIONS', 'PIPELINES', 'RESULTS THAT NAME THE DEVICE', 'SELECTING DEVICES', 'ERRORS', 'SIGNING IN UNATTENDED') {
            $topic | Should -BeLike "*$subject*"
        }
    }

    It 'says that -Name, -Tag and -GroupName take wildcards, and that -ClientId is optional with -Identity' {
        foreach ($parameter in 'Name', 'Tag', 'GroupName') {
            (Get-Help Get-DefenderMachine -Parameter $parameter).globbing | Should -Be 'true'
        }
        $identity = @((Get-Help Connect-DefenderApi).syntax.syntaxItem | Where-Object { $_.parameter.name -contains 'Identity' })
        ($identity[0].parameter | Where-Object name -eq 'ClientId').required | Should -Be 'false'
        $secret = @((Get-Help Connect-DefenderApi).syntax.syntaxItem | Where-Object { $_.parameter.name -contains 'ClientSecret' })
        ($secret[0].parameter | Where-Object name -eq 'ClientId').required | Should -Be 'true'
    }
}

Describe 'Loading the native library' {
    It 'loads the library in the module''s runtimes/RID/native folder for this OS and architecture' {
        $loaded = [Defender.DefenderLibrary]::LoadedPath
        $loaded | Should -Be (Join-Path $modulePath "runtimes/$([Defender.DefenderLibrary]::RuntimeIdentifier)/native/$([Defender.DefenderLibrary]::FileName)")
        Test-Path -LiteralPath $loaded | Should -BeTrue
    }

    It 'loads runtimes/RID/native/ inside the module first' {
        $copy = Copy-ModuleElsewhere
        $native = Join-Path $copy "runtimes/$([Defender.DefenderLibrary]::RuntimeIdentifier)/native"
        $null = New-Item -ItemType Directory -Path $native
        Copy-Item -LiteralPath ([Defender.DefenderLibrary]::LoadedPath) -Destination $native
        $result = Invoke-ChildPwsh "Import-Module '$copy'; [Defender.DefenderLibrary]::LoadedPath"
        $result.ExitCode | Should -Be 0 -Because $result.Output
        $result.Output.Trim() | Should -Be (Join-Path $native ([Defender.DefenderLibrary]::FileName))
    }

    It 'fails to import with an error naming every path it looked in when the library is missing' {
        $copy = Copy-ModuleElsewhere
        $result = Invoke-ChildPwsh "try { Import-Module '$copy' -ErrorAction Stop } catch { `$_.Exception.Message; exit 3 }"
        $result.ExitCode | Should -Be 3 -Because $result.Output
        $fileName = [Defender.DefenderLibrary]::FileName
        $result.Output | Should -BeLike "*$fileName*was not found*"
        $result.Output | Should -BeLike "*$(Join-Path $copy "runtimes/$([Defender.DefenderLibrary]::RuntimeIdentifier)/native/$fileName")*"
        # A built module looks in the target dir it was built into (<target>/powershell/DefenderPackage).
        $result.Output | Should -BeLike "*$(Join-Path (Join-Path (Split-Path (Split-Path $copy)) 'debug') $fileName)*"
        $result.Output | Should -BeLike "*cargo build -p defender*"
    }
}
