# The runbook of docs/powershell.md, which is Collect-TaggedDevices.ps1 here, run as Azure
# Automation runs it: in a runspace of its own, the module imported by name, signed in with the
# managed identity that Automation gives in IDENTITY_ENDPOINT and IDENTITY_HEADER; only the
# simulator's address is added, as default parameter values the script does not see.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $simulator = Start-TestSimulator -ClockScale 600 -PackageSize '64KiB'
    $runbook = Join-Path $PSScriptRoot 'Collect-TaggedDevices.ps1'
    $tag = "Runbook$([guid]::NewGuid().ToString('N').Substring(0, 6))"
    $devices = @(
        @{ id = 'b00c000000000000000000000000000000000001'; computer_dns_name = 'fin-01.contoso.test'; machine_tags = @($tag) }
        @{ id = 'b00c000000000000000000000000000000000002'; computer_dns_name = 'fin-02.contoso.test'; machine_tags = @($tag) }
        @{ id = 'b00c000000000000000000000000000000000003'; computer_dns_name = 'fin-03.contoso.test'; machine_tags = @("$tag-failing"); outcome = 'Failed' }
        @{ id = 'b00c000000000000000000000000000000000004'; computer_dns_name = 'fin-04.contoso.test'; machine_tags = @("$tag-failing") }
    )
    $null = Invoke-SimulatorControl -Simulator $simulator -Path machines -Body $devices

    function Invoke-Runbook {
        # Runs the runbook in a new runspace as Automation would; returns its output, errors and warnings.
        param([hashtable] $Parameter)
        $saved = @{}
        foreach ($name in 'IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'PSModulePath') { $saved[$name] = [Environment]::GetEnvironmentVariable($name) }
        [Environment]::SetEnvironmentVariable('IDENTITY_ENDPOINT', $simulator.identity_endpoint)
        [Environment]::SetEnvironmentVariable('IDENTITY_HEADER', $simulator.identity_header)
        # The module by its name, as the account's imported modules are found.
        [Environment]::SetEnvironmentVariable('PSModulePath', (Split-Path (Get-DefenderModulePath) -Parent) + [IO.Path]::PathSeparator + $saved.PSModulePath)
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($simulator, $runbook, $parameter)
                $PSDefaultParameterValues["Connect-DefenderApi:BaseUri"] = $simulator.base_url
                $PSDefaultParameterValues["Connect-DefenderApi:Option"] = @{ rate_limit = "off"; clock_scale = $simulator.ClockScale }
                $PSDefaultParameterValues["Connect-DefenderApi:InformationAction"] = "Ignore"
                & $runbook @parameter').AddArgument($simulator).AddArgument($runbook).AddArgument($Parameter)
            $failure = $null
            # Its output so far is kept when it fails.
            $output = [Management.Automation.PSDataCollection[psobject]]::new()
            try { $shell.Invoke($null, $output) } catch { $failure = if ($_.Exception.InnerException) { $_.Exception.InnerException } else { $_.Exception } }
            [pscustomobject]@{
                Output   = "$output"
                Failure  = $failure
                Warnings = @($shell.Streams.Warning | ForEach-Object Message)
            }
        } finally {
            $shell.Dispose()
            foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name]) }
        }
    }
}

AfterAll {
    Stop-TestSimulator -Simulator $simulator
}

Describe 'The runbook of the PowerShell guide' {
    It 'is this script, word for word' {
        $guide = Get-Content -Raw -LiteralPath (Join-Path $PSScriptRoot '../../docs/powershell.md')
        $shown = [regex]::Match($guide, '(?s)<!-- tests/pester/Collect-TaggedDevices.ps1 -->\s*```powershell\r?\n(.*?)```').Groups[1].Value
        $shown | Should -Not -BeNullOrEmpty -Because 'the guide shows the runbook after a comment naming this file'
        ($shown -replace "`r`n", "`n") | Should -BeExactly ((Get-Content -Raw -LiteralPath $runbook) -replace "`r`n", "`n")
    }

    It 'collects and saves the package of every device with the tag, each named after its device, and disconnects' {
        $folder = New-TestFolder
        $result = Invoke-Runbook @{ Tag = $tag; Incident = '4711'; Path = $folder }

        $result.Failure | Should -BeNullOrEmpty
        $saved = @($result.Output | ConvertFrom-Json)
        $saved.ComputerDnsName | Sort-Object | Should -Be @('fin-01.contoso.test', 'fin-02.contoso.test')
        foreach ($package in $saved) {
            Split-Path -Leaf $package.Path | Should -Be "$($package.ComputerDnsName.Split('.')[0])_$($package.ActionId).zip"
            $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $package.ActionId)
            Test-Path -LiteralPath $package.Path | Should -BeTrue
        }
        (Get-SimulatorRequest -Simulator $simulator | Where-Object credential).credential | Sort-Object -Unique | Should -Be 'app_service' -Because 'it signed in with the managed identity in $env:'
    }

    It 'names each device that has no package, and fails the job' {
        $result = Invoke-Runbook @{ Tag = "$tag-failing"; Incident = '4712'; Path = (New-TestFolder) }

        @($result.Output | ConvertFrom-Json).ComputerDnsName | Should -Be 'fin-04.contoso.test'
        $result.Warnings | Should -HaveCount 1
        $result.Warnings[0] | Should -BeLike 'fin-03.contoso.test (b00c000000000000000000000000000000000003): *ended Failed*'
        $result.Failure.Message | Should -Be "1 of the 2 devices tagged $tag-failing have no package."
    }

    It 'stops when no device has the tag, instead of succeeding having collected nothing' {
        $result = Invoke-Runbook @{ Tag = "$tag-nowhere"; Incident = '4713'; Path = (New-TestFolder) }
        $result.Failure.Message | Should -BeLike "*No device matches -Tag '$tag-nowhere'*"
        $result.Output | Should -BeNullOrEmpty
    }
}
