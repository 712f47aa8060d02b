# Pipelines that mean what they say (issue 20): every command takes the module's objects by what
# they are: a device, a machine action, a saved package, a link, an error's target, a string.
# One test per pair of commands (what makes the object | what takes it), against a simulator with
# sample devices. Then a mistyped action id, which ends at once also with -Wait, and timeouts
# that name -Timeout; and results, errors and progress that name the device.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-DefenderModulePath) -Force
    $simulator = Start-TestSimulator -ClockScale 600 -PackageSize '64KiB' -SeedMachines 20
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect -InformationAction Ignore

    # A device with a finished collection, saved once, with its link; and one with none.
    $device = Get-DefenderMachine -Name ws-0001
    $collection = $device | Start-DefenderInvestigationPackageCollection -Comment 'Pester: pipelines' | Wait-DefenderMachineAction
    $package = $collection | Save-DefenderInvestigationPackage -Path (New-TestFolder) -PassThru
    $link = $collection | Get-DefenderPackageUri
    $bare = Get-DefenderMachine -Name ws-0006
    $unknownAction = '00000000-0000-4000-8000-0000000dead1'

}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'What the objects are' {
    It 'the fixtures are what the tests take them for' {
        $device.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.Machine'
        $collection.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.MachineAction'
        $collection.status | Should -Be 'Succeeded'
        $collection.machineId | Should -Be $device.id
        $package.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.InvestigationPackage'
        $link.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.PackageUri'
        @(Get-DefenderMachineAction -MachineId $bare.id -WarningAction SilentlyContinue).Count | Should -Be 0
    }
}

Describe 'Get-DefenderMachine takes' {
    It 'a device: the device again' {
        ($device | Get-DefenderMachine).id | Should -Be $device.id
    }

    It 'a machine action: its device' {
        $found = $collection | Get-DefenderMachine
        $found.id | Should -Be $device.id
        $found.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.Machine'
    }

    It 'a saved package: its device' {
        ($package | Get-DefenderMachine).id | Should -Be $device.id
    }

    It 'a link: its device' {
        ($link | Get-DefenderMachine).id | Should -Be $device.id
    }

    It 'a string: a device id or computer name' {
        ($device.id, 'ws-0006' | Get-DefenderMachine).computerDnsName | Should -Be @($device.computerDnsName, $bare.computerDnsName)
    }

    It 'an action id passed positionally is not taken for a name: a device id is looked up as one' {
        $verbose = Get-DefenderMachine $device.id -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        (Get-DefenderMachine $device.id).computerDnsName | Should -Be $device.computerDnsName
        ($verbose.Message -join "`n") | Should -BeLike "*is a device id*looked up as one*"
    }
}

Describe 'Get-DefenderMachineAction takes' {
    It 'a device: its actions, newest first, narrowed by -Type and -Status' {
        $actions = @($device | Get-DefenderMachineAction)
        $actions.machineId | Sort-Object -Unique | Should -Be $device.id
        $actions.id | Should -Contain $collection.id
        @($device | Get-DefenderMachineAction -Type CollectInvestigationPackage -Status Succeeded).id | Should -Contain $collection.id
        @($device | Get-DefenderMachineAction -Status Pending -WarningAction SilentlyContinue).Count | Should -Be 0
    }

    It 'a device without actions: a warning naming it' {
        $bare | Get-DefenderMachineAction -WarningVariable warnings -WarningAction SilentlyContinue | Should -BeNullOrEmpty
        ($warnings -join "`n") | Should -BeLike "*$($bare.computerDnsName) ($($bare.id)) has no machine action*"
    }

    It 'a machine action, a saved package and a link: that action' {
        ($collection, $package, $link | Get-DefenderMachineAction).id | Should -Be @($collection.id, $collection.id, $collection.id)
    }

    It 'an action with list parameters: an error, as they select among a device''s actions' {
        $collection | Get-DefenderMachineAction -Status Succeeded -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.InvalidArgument,*'
        $failures[0].Exception.Message | Should -BeLike '*-Status select among a device''s actions*'
    }
}

Describe 'Wait-DefenderMachineAction takes' {
    It 'a device: its newest collection' {
        $newer = $device | Start-DefenderInvestigationPackageCollection -Comment 'Pester: newest'
        $waited = $device | Wait-DefenderMachineAction
        $waited.id | Should -Be $newer.id
        $waited.status | Should -Be 'Succeeded'
    }

    It 'a device without a collection: Defender.NotFound saying so, naming the device' {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $bare | Wait-DefenderMachineAction -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 5 -Because 'nothing is waited for'
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.WaitDefenderMachineActionCommand'
        $failures[0].Exception.Message | Should -Be "Device $($bare.computerDnsName) ($($bare.id)) has no investigation package collection."
        $failures[0].TargetObject.MachineId | Should -Be $bare.id
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*Start-DefenderInvestigationPackageCollection*'
    }

    It 'a machine action, a saved package and a link: that action' {
        ($collection, $package, $link | Wait-DefenderMachineAction).id | Should -Be @($collection.id, $collection.id, $collection.id)
    }

    It 'an error''s target: the action again' {
        $null = Wait-DefenderMachineAction -ActionId $unknownAction -ErrorVariable failures -ErrorAction SilentlyContinue
        $again = $failures[0].TargetObject | Wait-DefenderMachineAction -ErrorVariable second -ErrorAction SilentlyContinue
        $again | Should -BeNullOrEmpty
        $second[0].TargetObject.ActionId | Should -Be $unknownAction
    }
}

Describe 'Save-DefenderInvestigationPackage takes' {
    BeforeEach {
        $folder = New-TestFolder
    }

    It 'a device: the package of its newest collection' {
        $saved = $device | Save-DefenderInvestigationPackage -Path $folder -Wait -PassThru
        $newest = @($device | Get-DefenderMachineAction -Type CollectInvestigationPackage)[0]
        $saved.ActionId | Should -Be $newest.id
        $saved.ComputerDnsName | Should -Be $device.computerDnsName
    }

    It 'a device without a collection: Defender.NotFound saying so, and nothing saved' {
        $bare | Save-DefenderInvestigationPackage -Path $folder -Wait -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $failures[0].Exception.Message | Should -BeLike "*$($bare.computerDnsName)*has no investigation package collection*"
        Get-ChildItem -LiteralPath $folder | Should -BeNullOrEmpty
    }

    It 'a machine action, a saved package and a link: that package' {
        foreach ($item in $collection, $package, $link) {
            $saved = $item | Save-DefenderInvestigationPackage -Path $folder -Force -PassThru
            $saved.ActionId | Should -Be $collection.id
            $saved.Sha256 | Should -Be $package.Sha256
        }
    }

    It 'an error''s target: what failed, so that it can be retried' {
        Set-Content -LiteralPath (Join-Path $folder "$($collection.id).zip") -Value 'an older copy'
        $collection | Save-DefenderInvestigationPackage -Path $folder -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.Exists,*'
        $retried = $failures.TargetObject | Save-DefenderInvestigationPackage -Path $folder -Force -PassThru
        $retried.ActionId | Should -Be $collection.id
    }

    It 'strings and objects of other tools: ids, an ActionId or Id property, a hashtable' {
        $saved = @($collection.id, [pscustomobject]@{ ActionId = $collection.id }) | Save-DefenderInvestigationPackage -Path $folder -PassThru -ErrorAction SilentlyContinue
        $saved.ActionId | Should -Be $collection.id -Because 'the second is the same id: saved once'
        (@{ Id = $collection.id } | Save-DefenderInvestigationPackage -Path $folder -Force -PassThru).ActionId | Should -Be $collection.id
    }
}

Describe 'Start-DefenderInvestigationPackageCollection takes' {
    It 'a device: a collection on it' {
        $started = Get-DefenderMachine -Name ws-0002 | Start-DefenderInvestigationPackageCollection -Comment 'Pester: device'
        $started.machineId | Should -Be (Get-DefenderMachine -Name ws-0002).id
    }

    It 'a machine action, a saved package and a link: a new collection on their device' {
        foreach ($item in $collection, $package, $link) {
            $started = $item | Start-DefenderInvestigationPackageCollection -Comment 'Pester: again'
            $started.machineId | Should -Be $device.id
            $null = $started | Wait-DefenderMachineAction
        }
    }

    It 'a string: a device id or a computer name' {
        (Get-DefenderMachine -Name srv-0003).id, 'ws-0005' | Start-DefenderInvestigationPackageCollection -Comment 'Pester: strings' |
            ForEach-Object computerDnsName | Should -Be @('srv-0003.contoso.test', 'ws-0005.contoso.test')
    }
}

Describe 'Stop-DefenderMachineAction takes' {
    BeforeAll {
        function New-RunningAction {
            # Not a collection: the device's newest collection stays the one the other tests expect.
            New-SimulatedAction -Simulator $simulator -Spec @{ machine_id = $device.id; type = 'RunAntiVirusScan'; schedule = @{ pending_secs = 864000; in_progress_secs = 864000 } }
        }
    }

    It 'a device: refused, cancelling nothing' {
        $running = New-RunningAction
        $device | Stop-DefenderMachineAction -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.InvalidArgument,Defender.PowerShell.Commands.StopDefenderMachineActionCommand'
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*Get-DefenderMachineAction*'
        (Get-DefenderMachineAction -ActionId $running).status | Should -Not -Be 'Cancelled'
        $null = Stop-DefenderMachineAction -ActionId $running -Confirm:$false
    }

    It 'a saved package and a link: their action (which has ended, so the service refuses)' {
        $package, $link | Stop-DefenderMachineAction -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures.FullyQualifiedErrorId | Should -Be @('Defender.Http,Defender.PowerShell.Commands.StopDefenderMachineActionCommand', 'Defender.Http,Defender.PowerShell.Commands.StopDefenderMachineActionCommand')
        $failures.TargetObject.ActionId | Should -Be @($collection.id, $collection.id)
        $failures[0].Exception.Message | Should -BeLike "$($device.computerDnsName) ($($device.id)): *"
    }

    It 'a machine action and a string: cancelled' {
        $first, $second = (New-RunningAction), (New-RunningAction)
        $cancelled = (Get-DefenderMachineAction -ActionId $first), $second | Stop-DefenderMachineAction -Confirm:$false
        $cancelled.id | Should -Be @($first, $second)
        $cancelled.status | Sort-Object -Unique | Should -Be 'Cancelled'
    }
}

Describe 'Get-DefenderPackageUri takes' {
    It 'a device: the link of its newest collection' {
        $newest = @($device | Get-DefenderMachineAction -Type CollectInvestigationPackage -Status Succeeded)[0]
        $found = $device | Get-DefenderPackageUri
        $found.ActionId | Should -Be $newest.id
        $found.ComputerDnsName | Should -Be $device.computerDnsName
    }

    It 'a machine action, a saved package and a link: their link' {
        ($collection, $package, $link | Get-DefenderPackageUri).ActionId | Should -Be @($collection.id, $collection.id, $collection.id)
    }
}

Describe 'A mistyped action id' {
    It 'ends at once with Defender.NotFound, also with -Wait and the default -Timeout, in real time' {
        # The library's clock as a real tenant's: the 30 s a new action may stay unknown are real.
        $realTimeOption = Get-SimulatorOption -Simulator $simulator
        $realTimeOption.clock_scale = 1
        $realTime = Connect-DefenderApi @connect -Option $realTimeOption -PassThru
        Connect-DefenderApi @connect -InformationAction Ignore
        $clock = [Diagnostics.Stopwatch]::StartNew()

        Wait-DefenderMachineAction -ActionId $unknownAction -Connection $realTime -ErrorVariable waited -ErrorAction SilentlyContinue
        Save-DefenderInvestigationPackage -ActionId $unknownAction -Path (New-TestFolder) -Wait -Connection $realTime -ErrorVariable saved -ErrorAction SilentlyContinue

        $clock.Elapsed.TotalSeconds | Should -BeLessThan 10 -Because 'an id the service does not know is not polled (it was for 30 s and more)'
        foreach ($failure in $waited[0], $saved[0]) {
            $failure.FullyQualifiedErrorId | Should -BeLike 'Defender.NotFound,*'
            $failure.Exception | Should -BeOfType ([Defender.DefenderException])
            $failure.Exception.Message | Should -BeLike "*$unknownAction*"
        }
        Disconnect-DefenderApi -Connection $realTime
    }

    It 'a collection just started is still waited for while the service does not show it yet' {
        # The 30 s of grace count from the collection's creation: 5 s at this clock, ample for a busy machine.
        $option = Get-SimulatorOption -Simulator $simulator
        $option.clock_scale = 6
        $slower = Connect-DefenderApi @connect -Option $option -PassThru
        Connect-DefenderApi @connect -InformationAction Ignore
        $started = Get-DefenderMachine -Name ws-0009 | Start-DefenderInvestigationPackageCollection -Comment 'Pester: new' -Connection $slower
        Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'machine_action'; action_id = $started.id; times = 2; fault = @{ kind = 'not_found' } }
        ($started | Wait-DefenderMachineAction -Connection $slower).status | Should -Be 'Succeeded'
        @(Get-SimulatorRequest -Simulator $simulator -Endpoint machine_action | Where-Object { $_.action_id -eq $started.id -and $_.status -eq 404 }).Count | Should -Be 2
        Disconnect-DefenderApi -Connection $slower
    }
}

Describe 'Timeouts' {
    It 'name the parameter the user set: -Timeout, not the library''s wait_timeout_ms' {
        $slow = New-SimulatedAction -Simulator $simulator -Spec @{ machine_id = $device.id; type = 'RunAntiVirusScan'; schedule = @{ pending_secs = 864000; in_progress_secs = 0 } }
        Wait-DefenderMachineAction -ActionId $slow -Timeout 30 -ErrorVariable waited -ErrorAction SilentlyContinue
        Save-DefenderInvestigationPackage -ActionId $slow -Path (New-TestFolder) -Wait -Timeout 45 -ErrorVariable saved -ErrorAction SilentlyContinue
        $waited[0].FullyQualifiedErrorId | Should -BeLike 'Defender.Timeout,*'
        $waited[0].Exception.Message | Should -BeLike '*(-Timeout 30 s)*'
        $saved[0].Exception.Message | Should -BeLike '*(-Timeout 45 s)*'
        foreach ($failure in $waited[0], $saved[0]) {
            $failure.Exception.Message | Should -Not -BeLike '*wait_timeout_ms*'
            $failure.ErrorDetails.RecommendedAction | Should -BeLike '*-Timeout*'
        }
        $null = Stop-DefenderMachineAction -ActionId $slow -Confirm:$false
    }
}

Describe 'Results, errors and progress name the device' {
    It 'a saved package carries its device''s name and id; with -FileNamePattern its file is named after it' {
        $folder = New-TestFolder
        $saved = $collection.id | Save-DefenderInvestigationPackage -Path $folder -FileNamePattern '{ComputerName}_{ActionId}.zip' -PassThru
        $saved.ComputerDnsName | Should -Be $device.computerDnsName
        $saved.MachineId | Should -Be $device.id
        $saved.Path | Should -Be (Join-Path $folder "ws-0001_$($collection.id).zip")
        (Get-FileHash -LiteralPath $saved.Path -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $package.Sha256
    }

    It 'refuses a pattern that is not safe, naming -FileNamePattern, before any request' {
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        { $collection | Save-DefenderInvestigationPackage -Path (New-TestFolder) -FileNamePattern '../{ActionId}.zip' } |
            Should -Throw -ErrorId 'Defender.InvalidArgument,*' -ExpectedMessage "*-FileNamePattern takes*not safe in a file name*"
        { $collection | Save-DefenderInvestigationPackage -Path (New-TestFolder) -FileNamePattern '{ComputerName}.zip' } |
            Should -Throw -ExpectedMessage '*no {action_id}*'
        Get-SimulatorRequest -Simulator $simulator | Where-Object endpoint -ne token | Should -BeNullOrEmpty
    }

    It 'an error names the device in its message and its TargetObject' {
        $failing = New-SimulatedAction -Simulator $simulator -Spec @{ machine_id = (Get-DefenderMachine -Name ws-0008).id; outcome = 'Failed' }
        $action = Get-DefenderMachineAction -ActionId $failing
        $action | Save-DefenderInvestigationPackage -Path (New-TestFolder) -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.ActionFailed,*'
        $failures[0].TargetObject | Should -BeOfType ([Defender.PowerShell.DefenderTarget])
        $failures[0].TargetObject.ActionId | Should -Be $failing
        $failures[0].TargetObject.MachineId | Should -Be $action.machineId
        $failures[0].TargetObject.ComputerDnsName | Should -Be 'ws-0008.contoso.test'
        $failures[0].Exception.Message | Should -BeLike "ws-0008.contoso.test ($($action.machineId)): *"
        "$($failures[0].TargetObject)" | Should -Be "machine action $failing on ws-0008.contoso.test ($($action.machineId))"
        $failures[0].CategoryInfo.TargetName | Should -BeLike '*ws-0008.contoso.test*'
    }

    It 'a progress bar names the device' {
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($module, $connect, $item, $folder) Import-Module $module; Connect-DefenderApi @connect -InformationAction Ignore; $item | Save-DefenderInvestigationPackage -Path $folder').
            AddArgument((Get-DefenderModulePath)).AddArgument($connect).AddArgument($collection).AddArgument((New-TestFolder))
            $shell.Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
            $activities = @($shell.Streams.Progress.Activity | Sort-Object -Unique)
        } finally {
            $shell.Dispose()
        }
        $activities | Should -Be "Saving the investigation package of machine action $($collection.id) on $($device.computerDnsName) ($($device.id))"
    }
}
