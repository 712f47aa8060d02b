# Selecting devices that fails loudly (issue 20): -Name, -Tag and -GroupName with several values
# and wildcards (what OData cannot say is matched here), a selection that matches nothing (a
# warning, or an error when errors stop), validated -HealthStatus; and Tab completion through
# TabExpansion2: tags, groups and platforms from the tenant (listed once, cached), action types,
# -FileNamePattern, and -Option's keys, also inside @{ }.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-DefenderModulePath) -Force
    $simulator = Start-TestSimulator -ClockScale 600 -PackageSize '64KiB' -SeedMachines 20
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect -InformationAction Ignore
    # Two more tags and a group of their own.
    $null = Invoke-SimulatorControl -Simulator $simulator -Path machines -Body @(
        @{ id = 'c0ffee0000000000000000000000000000000001'; computer_dns_name = 'lab-01.contoso.test'; machine_tags = @('Incident4712', 'Lab'); rbac_group_name = 'Lab Devices'; rbac_group_id = 7; os_platform = 'Linux' }
        @{ id = 'c0ffee0000000000000000000000000000000002'; computer_dns_name = 'lab-02.contoso.test'; machine_tags = @('Lab'); rbac_group_name = 'Lab Devices'; rbac_group_id = 7; os_platform = 'Linux' }
    )

    function Get-LastFilter {
        # The $filter of the last list_machines request, decoded; $null for none.
        $query = (Get-SimulatorRequest -Simulator $simulator -Endpoint list_machines)[-1].query
        foreach ($pair in "$query" -split '&') {
            $name, $value = $pair -split '=', 2
            if ([uri]::UnescapeDataString($name) -eq '$filter') { return [uri]::UnescapeDataString($value.Replace('+', ' ')) }
        }
    }

    function Get-Completion {
        # What Tab offers at the end of $Line.
        param([string] $Line)
        (TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches
    }
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Several values and wildcards' {
    It '-Tag A, B selects the devices with either, asking the service for both' {
        $found = @(Get-DefenderMachine -Tag Incident4711, Incident4712)
        $found.Count | Should -Be 7
        $found.computerDnsName | Should -Contain 'lab-01.contoso.test'
        Get-LastFilter | Should -Be "(machineTags/any(t: t eq 'Incident4711') or machineTags/any(t: t eq 'Incident4712'))"
    }

    It '-Tag with a wildcard is matched here, which the help says' {
        $found = @(Get-DefenderMachine -Tag 'Incident*')
        $found.Count | Should -Be 7
        Get-LastFilter | Should -BeNullOrEmpty -Because 'machineTags/any() has no startswith: every device is listed'
        (Get-Help Get-DefenderMachine -Parameter Tag).description.Text | Should -BeLike '*matched here*'
        (Get-Help Get-DefenderMachine -Parameter Tag).globbing | Should -Be 'true'
    }

    It '-Name and -GroupName take several values and wildcards; the help says they take wildcards' {
        $found = @(Get-DefenderMachine -Name 'lab-*', 'srv-0003' -GroupName 'Lab*', Servers)
        $found.computerDnsName | Sort-Object | Should -Be @('lab-01.contoso.test', 'lab-02.contoso.test', 'srv-0003.contoso.test')
        Get-LastFilter | Should -Be "(startswith(computerDnsName, 'lab-') or (computerDnsName eq 'srv-0003' or startswith(computerDnsName, 'srv-0003.')))"
        foreach ($parameter in 'Name', 'GroupName') {
            (Get-Help Get-DefenderMachine -Parameter $parameter).globbing | Should -Be 'true' -Because "-$parameter takes wildcards"
        }
    }

    It '-HealthStatus and -OsPlatform take several values; a health status that does not exist is refused before any request' {
        @(Get-DefenderMachine -HealthStatus Active, Inactive).Count | Should -Be 22
        Get-LastFilter | Should -Be "(healthStatus eq 'Active' or healthStatus eq 'Inactive')"
        @(Get-DefenderMachine -OsPlatform Linux).Count | Should -Be 2
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        { Get-DefenderMachine -HealthStatus Healthy } | Should -Throw -ErrorId 'ParameterArgumentValidationError,Defender.PowerShell.Commands.GetDefenderMachineCommand'
        Get-SimulatorRequest -Simulator $simulator -Endpoint list_machines | Should -BeNullOrEmpty
    }
}

Describe 'A selection that matches nothing' {
    It 'writes a warning naming the selection, and returns nothing (when errors do not stop the command)' {
        $found = Get-DefenderMachine -Tag 'Incidnet4711' -WarningVariable warnings -WarningAction SilentlyContinue -ErrorAction Continue
        $found | Should -BeNullOrEmpty
        ($warnings -join "`n") | Should -BeLike "No device matches -Tag 'Incidnet4711'.*Tab completes*"
        Get-DefenderMachine -GroupName 'Nobody*' -WarningVariable none -WarningAction SilentlyContinue -ErrorAction Continue
        ($none -join "`n") | Should -BeLike "No device matches -GroupName 'Nobody*'*"
    }

    It 'stops with Defender.NoMatch under -ErrorAction Stop, or $ErrorActionPreference = ''Stop''' {
        { Get-DefenderMachine -Tag 'Incident*' -GroupName Nobody -ErrorAction Stop } |
            Should -Throw -ErrorId 'Defender.NoMatch,Defender.PowerShell.Commands.GetDefenderMachineCommand' -ExpectedMessage "*-Tag 'Incident*' -GroupName 'Nobody'*"
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($module, $connect) $ErrorActionPreference = "Stop"; Import-Module $module; Connect-DefenderApi @connect -InformationAction Ignore; try { Get-DefenderMachine -Tag Nothing; "went on" } catch { $_.FullyQualifiedErrorId; $_.Exception.GetType().FullName; $_.ErrorDetails.RecommendedAction }').
            AddArgument((Get-DefenderModulePath)).AddArgument($connect)
            $id, $type, $advice = $shell.Invoke()
        } finally {
            $shell.Dispose()
        }
        "$id" | Should -Be 'Defender.NoMatch,Defender.PowerShell.Commands.GetDefenderMachineCommand'
        "$type" | Should -Be 'Defender.DefenderException'
        "$advice" | Should -BeLike '*Tab completes*'
    }

    It 'a name without wildcards that is not there is Defender.NotFound, for that name alone' {
        $found = @(Get-DefenderMachine -Name 'lab-01', 'nowhere-42' -ErrorVariable failures -ErrorAction SilentlyContinue)
        $found.computerDnsName | Should -Be 'lab-01.contoso.test'
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.GetDefenderMachineCommand'
        $failures[0].Exception | Should -BeOfType ([Defender.DefenderException])
        $failures[0].TargetObject.ComputerDnsName | Should -Be 'nowhere-42'
    }
}

Describe 'Tab completion' {
    It 'completes -Tag and -GroupName from the tenant, listing its devices once for both' {
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        (Get-Completion 'Get-DefenderMachine -Tag Inc').CompletionText | Should -Be @('Incident4711', 'Incident4712')
        (Get-Completion 'Get-DefenderMachine -GroupName ').CompletionText | Should -Be @("'Lab Devices'", 'Servers', 'Workstations')
        (Get-Completion 'Get-DefenderMachine -Tag L').CompletionText | Should -Be 'Lab'
        @(Get-SimulatorRequest -Simulator $simulator -Endpoint list_machines).Count | Should -Be 1 -Because 'the tenant''s values are kept'
    }

    It 'completes -OsPlatform with the tenant''s platforms and the ones Defender reports, -HealthStatus with its set' {
        $platforms = (Get-Completion 'Get-DefenderMachine -OsPlatform ').CompletionText
        $platforms | Should -Contain 'Linux'
        $platforms | Should -Contain 'WindowsServer2022'
        $platforms | Should -Contain 'macOS'
        (Get-Completion 'Get-DefenderMachine -HealthStatus Imp').CompletionText | Should -Be 'ImpairedCommunication'
    }

    It 'completes -Type of Get-DefenderMachineAction and -FileNamePattern of Save-DefenderInvestigationPackage' {
        (Get-Completion 'Get-DefenderMachineAction -Type Coll').CompletionText | Should -Be 'CollectInvestigationPackage'
        (Get-Completion "Save-DefenderInvestigationPackage -FileNamePattern '{ComputerN").CompletionText | Should -Contain "'{ComputerName}_{ActionId}.zip'"
    }

    It 'offers nothing (and does not fail) without a connection' {
        Disconnect-DefenderApi
        try {
            Get-Completion 'Get-DefenderMachine -Tag Inc' | Should -BeNullOrEmpty
            (Get-Completion 'Get-DefenderMachine -OsPlatform Win').CompletionText | Should -Contain 'Windows11'
        } finally {
            Connect-DefenderApi @connect -InformationAction Ignore
        }
    }

    It 'completes -Option''s keys inside @{ } from the option type, whose keys are the library''s' -Skip:($PSVersionTable.PSVersion -lt [version]'7.4') {
        # Completion inside a hashtable literal comes from the parameter type's properties
        # (PowerShell 7.4+): they must be exactly the keys -Option takes.
        $keys = [Defender.PowerShell.Commands.ConnectDefenderApiCommand]::OptionKeys()
        @([Defender.PowerShell.ConnectionOptions].GetProperties().Name | Sort-Object) | Should -Be @($keys | Sort-Object)

        (Get-Completion 'Connect-DefenderApi -Identity -Option @{ max_c').CompletionText | Should -Be 'max_concurrent_downloads'
        $offered = (Get-Completion 'Connect-DefenderApi -Identity -Option @{ timeout_ms = 1000; ').CompletionText
        $offered | Should -Contain 'file_name_pattern'
        $offered | Should -Not -Contain 'timeout_ms' -Because 'a key given already is not offered again'
        $offered | Should -Not -Contain 'client_secret' -Because 'a parameter sets it'
    }

    It 'keeps every key of a hashtable -Option as given, so that a misspelt one is refused with the list' {
        $options = [Defender.PowerShell.ConnectionOptions]@{ time_out = 5; timeout_ms = $true }
        { Connect-DefenderApi -Identity -Option $options } | Should -Throw -ErrorId 'Defender.UnknownOption,*' -ExpectedMessage "*'time_out'*"
        Connect-DefenderApi @connect -InformationAction Ignore
    }
}
