# Devices, action lists and cancel (issue 10): Get-DefenderMachine, the list form of
# Get-DefenderMachineAction, Start-DefenderInvestigationPackageCollection -ComputerName and from
# devices in the pipeline, Stop-DefenderMachineAction; against a simulator with 20 sample devices
# (ws-0000..., srv-0003..., six tagged Incident4711, ws-0000 twice: a re-imaged machine).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-DefenderModulePath) -Force
    $simulator = Start-TestSimulator -ClockScale 600 -PackageSize '64KiB' -SeedMachines 20
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect

    function Get-LastFilter {
        # The $filter of the last request to an endpoint (list_machines, list_actions), decoded.
        param([string] $Endpoint)
        $query = (Get-SimulatorRequest -Simulator $simulator -Endpoint $Endpoint)[-1].query
        foreach ($pair in $query -split '&') {
            $name, $value = $pair -split '=', 2
            if ([uri]::UnescapeDataString($name) -eq '$filter') { return [uri]::UnescapeDataString($value.Replace('+', ' ')) }
        }
    }
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Get-DefenderMachine' {
    It 'finds the devices with a tag as typed objects shown as a table' {
        $machines = @(Get-DefenderMachine -Tag Incident4711)
        $machines.Count | Should -Be 6
        foreach ($machine in $machines) {
            $machine.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.Machine'
            $machine.machineTags | Should -Contain 'Incident4711'
            $machine.id | Should -Match '^[0-9a-f]{40}$'
        }
        Get-LastFilter list_machines | Should -Be "machineTags/any(t: t eq 'Incident4711')"
        $table = $machines | Out-String -Width 250
        $table | Should -Match 'ComputerDnsName\s+Id\s+Health\s+OsPlatform\s+Group\s+Last seen \(UTC\)\s+Tags'
        $table | Should -Match 'ws-0000\.contoso\.test\s+5eed0{36}\s+Active\s+Windows11\s+Workstations\s+.*Incident4711'
    }

    It 'finds a host name''s fully qualified name, and both records of a re-imaged machine' {
        $machines = @(Get-DefenderMachine ws-0000)
        $machines.computerDnsName | Sort-Object -Unique | Should -Be 'ws-0000.contoso.test'
        $machines.Count | Should -Be 2
        @($machines | Where-Object healthStatus -eq 'Inactive').Count | Should -Be 1
    }

    It 'sends the text before a wildcard as startswith and matches the rest and the group locally' {
        $servers = @(Get-DefenderMachine -Name 'srv-*' -GroupName servers)
        $servers.computerDnsName | Should -Be @('srv-0003.contoso.test', 'srv-0007.contoso.test', 'srv-0011.contoso.test', 'srv-0015.contoso.test')
        Get-LastFilter list_machines | Should -Be "startswith(computerDnsName, 'srv-')"

        # Nothing before the first wildcard: the service lists every active device, matched here.
        $some = @(Get-DefenderMachine -Name '*-00?1.*' -HealthStatus Active)
        $some.computerDnsName | Should -Be @('ws-0001.contoso.test', 'srv-0011.contoso.test')
        Get-LastFilter list_machines | Should -Be "healthStatus eq 'Active'"

        @(Get-DefenderMachine -GroupName 'Nobody*' -ErrorAction SilentlyContinue -WarningAction SilentlyContinue).Count | Should -Be 0
    }

    It 'quotes a name with quotes in it, so that it cannot change the filter' {
        $crafted = "x' or computerDnsName ne 'x"
        $found = Get-DefenderMachine -Name $crafted -ErrorVariable failures -ErrorAction SilentlyContinue
        $found | Should -BeNullOrEmpty
        Get-LastFilter list_machines | Should -Be "(computerDnsName eq 'x'' or computerDnsName ne ''x' or startswith(computerDnsName, 'x'' or computerDnsName ne ''x.'))"
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.GetDefenderMachineCommand'
        $failures[0].TargetObject.ComputerDnsName | Should -Be $crafted

        @(Get-DefenderMachine -Tag "Incident4711' or 'a' eq 'a" -ErrorAction SilentlyContinue -WarningAction SilentlyContinue).Count | Should -Be 0
    }

    It 'looks devices up by -Id and from the pipeline, with Defender.NotFound for an unknown one' {
        $unknown = 'nowhere-99'
        $machines = @('5eed000000000000000000000000000000000003', $unknown, 'ws-0004') |
            Get-DefenderMachine -ErrorVariable failures -ErrorAction SilentlyContinue
        $machines.computerDnsName | Should -Be @('srv-0003.contoso.test', 'ws-0004.contoso.test')
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.GetDefenderMachineCommand'
        $failures[0].TargetObject.ComputerDnsName | Should -Be $unknown
    }

    It 'passes a raw -Filter and reports the service''s refusal as Defender.Http' {
        $servers = @(Get-DefenderMachine -Filter 'rbacGroupId eq 2' -OsPlatform WindowsServer2022)
        $servers.Count | Should -BeGreaterThan 0
        $servers.rbacGroupName | Sort-Object -Unique | Should -Be 'Servers'
        Get-LastFilter list_machines | Should -Be "osPlatform eq 'WindowsServer2022' and (rbacGroupId eq 2)"

        Get-DefenderMachine -Filter "rbacGroupName eq 'Servers'" -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.Http,Defender.PowerShell.Commands.GetDefenderMachineCommand'
        $failures[0].Exception.Message | Should -Match 'filter'
    }

    It 'fails with Defender.NotConnected when not connected' {
        # No runspace of this process is connected meanwhile: there is none to borrow either.
        Disconnect-DefenderApi
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($module) Import-Module $module; Get-DefenderMachine -Tag x').AddArgument((Get-DefenderModulePath))
            $shell.Invoke() | Should -BeNullOrEmpty
            $shell.Streams.Error[0].FullyQualifiedErrorId | Should -Be 'Defender.NotConnected,Defender.PowerShell.Commands.GetDefenderMachineCommand'
            $shell.Streams.Error[0].Exception.Message | Should -BeLike '*Connect-DefenderApi*'
        } finally {
            $shell.Dispose()
            Connect-DefenderApi @connect -InformationAction Ignore
        }
    }
}

Describe 'An incident from the tag to the packages' {
    It 'Get-DefenderMachine -Tag | Start-DefenderInvestigationPackageCollection | Save-DefenderInvestigationPackage -Wait saves every package' {
        $folder = New-TestFolder
        $tagged = @(Get-DefenderMachine -Tag Incident4711)

        $saved = @(Get-DefenderMachine -Tag Incident4711 |
            Start-DefenderInvestigationPackageCollection -Comment 'Incident 4711' |
            Save-DefenderInvestigationPackage -Path $folder -Wait -PassThru -ErrorAction Stop)

        $saved.Count | Should -Be $tagged.Count
        $actions = $saved | ForEach-Object { Get-DefenderMachineAction -ActionId $_.ActionId }
        ($actions.machineId | Sort-Object) | Should -Be ($tagged.id | Sort-Object)
        foreach ($package in $saved) {
            $package.Path | Should -Be (Join-Path $folder "$($package.ActionId).zip")
            $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $package.ActionId)
            (Get-FileHash -LiteralPath $package.Path -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $package.Sha256
        }
        @(Get-ChildItem -LiteralPath $folder).Count | Should -Be $tagged.Count
    }

    It 'Start-DefenderInvestigationPackageCollection -ComputerName collects on the device seen last with that name' {
        $actions = @(Start-DefenderInvestigationPackageCollection -ComputerName ws-0005, nowhere-01 -Comment 'by name' -ErrorVariable failures -ErrorAction SilentlyContinue)
        $actions.Count | Should -Be 1
        $actions[0].machineId | Should -Be '5eed000000000000000000000000000000000005'
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.StartDefenderInvestigationPackageCollectionCommand'

        $reimaged = Start-DefenderInvestigationPackageCollection -ComputerName ws-0000 -Comment 'by name' -WarningVariable warnings -WarningAction SilentlyContinue
        $reimaged.machineId | Should -Be '5eed000000000000000000000000000000000000'
        ($warnings -join "`n") | Should -Match '5eed000000000000000000000000000000000013'
    }

    It 'Start-DefenderInvestigationPackageCollection -WhatIf starts nothing' {
        $before = @(Get-SimulatorRequest -Simulator $simulator -Endpoint collect).Count
        Get-DefenderMachine -Tag Incident4711 | Start-DefenderInvestigationPackageCollection -Comment 'no' -WhatIf
        @(Get-SimulatorRequest -Simulator $simulator -Endpoint collect).Count | Should -Be $before
    }
}

Describe 'Get-DefenderMachineAction lists' {
    BeforeAll {
        $requestor = "pester-$([guid]::NewGuid().ToString('N').Substring(0, 8))@contoso.test"
        $old = New-SimulatedAction -Simulator $simulator -Spec @{ requestor = $requestor; age_secs = 3 * 86400 }
        $recent = New-SimulatedAction -Simulator $simulator -Spec @{ requestor = $requestor; machine_id = '5eed000000000000000000000000000000000009' }
        $running = New-SimulatedAction -Simulator $simulator -Spec @{ requestor = $requestor; schedule = @{ pending_secs = 864000; in_progress_secs = 864000 } }
        $scan = New-SimulatedAction -Simulator $simulator -Spec @{ requestor = $requestor; type = 'RunAntiVirusScan' }
    }

    It 'filters on -Requestor, -Type, -Status, -Since and -MachineId, quoted' {
        (@(Get-DefenderMachineAction -Requestor $requestor).id | Sort-Object) | Should -Be (@($old, $recent, $running, $scan) | Sort-Object)

        $since = [DateTime]::UtcNow.AddDays(-1)
        $succeeded = @(Get-DefenderMachineAction -Requestor $requestor -Type CollectInvestigationPackage -Status Succeeded -Since $since)
        $succeeded.id | Should -Be @($recent)
        $succeeded[0].PSObject.TypeNames[0] | Should -Be 'DefenderPackage.MachineAction'
        Get-LastFilter list_actions | Should -Be ("type eq 'CollectInvestigationPackage' and status eq 'Succeeded' and creationDateTimeUtc ge " +
            $since.ToString('yyyy-MM-ddTHH:mm:ssZ', [Globalization.CultureInfo]::InvariantCulture) + " and requestor eq '$requestor'")

        @(Get-DefenderMachineAction -Requestor $requestor -MachineId '5eed000000000000000000000000000000000009').id | Should -Be @($recent)
        @(Get-DefenderMachineAction -Requestor "$requestor' or 'a' eq 'a" -WarningAction SilentlyContinue).Count | Should -Be 0
    }

    It 'still takes ids from the pipeline, and lists everything without parameters' {
        ($recent, $old | Get-DefenderMachineAction).id | Should -Be @($recent, $old)
        @(Get-DefenderMachineAction).id | Should -Contain $scan
    }

    It 'joins a raw -Filter, and reports a filter the service refuses as Defender.Http' {
        @(Get-DefenderMachineAction -Requestor $requestor -Filter "type eq 'RunAntiVirusScan'").id | Should -Be @($scan)
        Get-DefenderMachineAction -Filter "computerDnsName eq" -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.Http,Defender.PowerShell.Commands.GetDefenderMachineActionCommand'
    }

    It 'refuses an unknown -Status before calling the service' {
        { Get-DefenderMachineAction -Status Done } | Should -Throw -ErrorId 'ParameterArgumentValidationError,Defender.PowerShell.Commands.GetDefenderMachineActionCommand'
    }
}

Describe 'Stop-DefenderMachineAction' {
    BeforeEach {
        $running = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 864000; in_progress_secs = 864000 } }
    }

    It 'with -WhatIf cancels nothing' {
        Stop-DefenderMachineAction -ActionId $running -WhatIf
        (Get-DefenderMachineAction -ActionId $running).status | Should -Not -Be 'Cancelled'
        @(Get-SimulatorRequest -Simulator $simulator -Endpoint cancel_action | Where-Object path -Match $running).Count | Should -Be 0
    }

    It 'asks for confirmation (ConfirmImpact High)' {
        $metadata = [Management.Automation.CommandMetadata]::new((Get-Command Stop-DefenderMachineAction))
        $metadata.SupportsShouldProcess | Should -BeTrue
        $metadata.ConfirmImpact | Should -Be 'High'
    }

    It 'cancels a running action with the comment, from the pipeline' {
        $cancelled = Get-DefenderMachineAction -ActionId $running | Stop-DefenderMachineAction -Comment 'Wrong device' -Confirm:$false
        $cancelled.id | Should -Be $running
        $cancelled.status | Should -Be 'Cancelled'
        $cancelled.cancellationComment | Should -Be 'Wrong device'
        (Get-DefenderMachineAction -ActionId $running).status | Should -Be 'Cancelled'
    }

    It 'writes Defender.Http for a finished action and Defender.NotFound for an unknown one, and goes on' {
        $finished = New-SimulatedAction -Simulator $simulator
        $unknown = '00000000-0000-4000-8000-00000000beef'
        $cancelled = Stop-DefenderMachineAction -ActionId $finished, $unknown, $running -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue
        $cancelled.id | Should -Be $running
        $failures.Count | Should -Be 2
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.Http,Defender.PowerShell.Commands.StopDefenderMachineActionCommand'
        $failures[0].Exception.Message | Should -Match 'final state'
        $failures[0].TargetObject.ActionId | Should -Be $finished
        $failures[1].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.StopDefenderMachineActionCommand'
    }
}
