# Every command against the real native library and a defender-simulator over loopback HTTP.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $modulePath = Get-DefenderModulePath
    Import-Module $modulePath -Force
    $simulator = Start-TestSimulator
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect

    function New-ConnectedShell {
        # A PowerShell instance on its own runspace (as a second console would be), with the
        # module imported and connected to the simulator; its streams can be read while it runs.
        $shell = [powershell]::Create()
        $null = $shell.AddScript('param($module, $connect) Import-Module $module; Connect-DefenderApi @connect').
        AddArgument($modulePath).AddArgument($connect)
        $shell.Invoke()
        $shell.Commands.Clear()
        $shell
    }

    function Wait-Until {
        param([scriptblock] $Condition, [double] $Seconds = 30)
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "timed out after $Seconds s waiting for: $Condition" }
            Start-Sleep -Milliseconds 50
        }
    }
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Save-DefenderInvestigationPackage' {
    BeforeEach {
        $folder = New-TestFolder
    }

    It 'saves the package, as the download host serves it, and returns its path, size and SHA-256' {
        $id = New-SimulatedAction -Simulator $simulator

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -PassThru

        $expectedPath = Join-Path $folder "$id.zip"
        $package.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.InvestigationPackage'
        $package.ActionId | Should -Be $id
        $package.Path | Should -Be $expectedPath
        $package.Size | Should -Be 1MB
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)
        (Get-FileHash -LiteralPath $expectedPath -Algorithm SHA256).Hash | Should -Be $package.Sha256.ToUpperInvariant()
        (Get-ChildItem -LiteralPath $folder -Force).Name | Should -Be "$id.zip"
    }

    It 'writes nothing without -PassThru, and resolves a relative -Path against the current location' {
        $id = New-SimulatedAction -Simulator $simulator
        Push-Location $folder
        try {
            $output = Save-DefenderInvestigationPackage -ActionId $id -Path .
        } finally {
            Pop-Location
        }
        $output | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $folder "$id.zip") | Should -BeTrue
    }

    It 'feeds Write-Progress from the native progress callback until the download completes' {
        $id = New-SimulatedAction -Simulator $simulator
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript("Save-DefenderInvestigationPackage -ActionId '$id' -Path '$folder'")
            $shell.Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
            $records = @($shell.Streams.Progress)
        } finally {
            $shell.Dispose()
        }
        $records.Count | Should -BeGreaterThan 1
        $records[0].Activity | Should -BeLike "*$id*"
        $records[-1].RecordType | Should -Be 'Completed'
        $last = $records | Where-Object RecordType -eq 'Processing' | Select-Object -Last 1
        $last.PercentComplete | Should -Be 100
        $last.StatusDescription | Should -Be '1.0 MiB of 1.0 MiB'
    }

    It 'with -WhatIf writes no file and sends no request' {
        $id = New-SimulatedAction -Simulator $simulator
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests

        $output = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -WhatIf -PassThru

        $output | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
        Get-SimulatorRequest -Simulator $simulator | Should -BeNullOrEmpty
    }

    It 'keeps an existing file (Defender.Exists) unless -Force is given, and -Force lasts one command' {
        $id = New-SimulatedAction -Simulator $simulator
        $path = Join-Path $folder "$id.zip"
        Set-Content -LiteralPath $path -Value 'an older copy'

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.Exists,Save-DefenderInvestigationPackage'
        $failures[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        Get-Content -LiteralPath $path | Should -Be 'an older copy'

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -Force -PassThru
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -ErrorVariable again -ErrorAction SilentlyContinue
        $again[0].FullyQualifiedErrorId | Should -Be 'Defender.Exists,Save-DefenderInvestigationPackage'
    }

    It 'saves a pipeline of ids, strings and objects by Id or ActionId, and one bad id does not stop the rest' {
        $first, $second, $third = 1..3 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        $unknown = '00000000-0000-4000-8000-00000000dead'
        $input = @(
            $first
            [pscustomobject]@{ Id = $second }
            $unknown
            [pscustomobject]@{ ActionId = $third }
        )

        $saved = $input | Save-DefenderInvestigationPackage -Path $folder -PassThru -ErrorVariable failures -ErrorAction SilentlyContinue

        $saved.ActionId | Should -Be @($first, $second, $third)
        (Get-ChildItem -LiteralPath $folder -Force).Name | Sort-Object | Should -Be (@($first, $second, $third) | ForEach-Object { "$_.zip" } | Sort-Object)
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Save-DefenderInvestigationPackage'
        $failures[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failures[0].TargetObject | Should -Be $unknown
        $failures[0].Exception.Message | Should -BeLike "*$unknown*"
    }

    It 'creates a missing folder, but not with -WhatIf' {
        $id = New-SimulatedAction -Simulator $simulator
        $missing = Join-Path $folder 'cases/4711'

        Save-DefenderInvestigationPackage -ActionId $id -Path $missing -WhatIf
        Test-Path -LiteralPath (Join-Path $folder 'cases') | Should -BeFalse

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $missing -PassThru
        $package.Path | Should -Be (Join-Path $missing "$id.zip")
        Test-Path -LiteralPath $package.Path -PathType Leaf | Should -BeTrue
    }

    It 'saves one package to a file path, and refuses a second package to the same file' {
        $first, $second = 1..2 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        $path = Join-Path $folder 'case-4711.zip'

        $saved = $first, $second | Save-DefenderInvestigationPackage -Path $path -PassThru -ErrorVariable failures -ErrorAction SilentlyContinue

        $saved.ActionId | Should -Be $first
        $saved.Path | Should -Be $path
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.InvalidArgument,Save-DefenderInvestigationPackage'
        $failures[0].TargetObject | Should -Be $second
        (Get-ChildItem -LiteralPath $folder -Force).Name | Should -Be 'case-4711.zip'
    }

    It 'fails with Defender.NotReady while the collection runs, and with -Wait waits for it' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 20; in_progress_secs = 40 } }

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotReady,Save-DefenderInvestigationPackage'
        $failures[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        $failures[0].TargetObject | Should -Be $id
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -Wait -PassThru
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)
    }

    It 'fails with Defender.ActionFailed for a collection that failed, with -Wait too' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'Failed' }

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -Wait -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.ActionFailed,Save-DefenderInvestigationPackage'
        $failures[0].TargetObject | Should -Be $id
        $failures[0].Exception.Message | Should -BeLike '*Failed*'
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
    }

    It 'is cancelled promptly by stopping the pipeline (Ctrl+C), leaving no file, and the session goes on' {
        $slow = New-SimulatedAction -Simulator $simulator
        Add-SimulatorFault -Simulator $simulator -Rule @{
            endpoint = 'download'; action_id = $slow; fault = @{ kind = 'slow_body'; bytes_per_sec = 16384 }
        }
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript("Save-DefenderInvestigationPackage -ActionId '$slow' -Path '$folder'")
            $running = $shell.BeginInvoke()
            Wait-Until { @($shell.Streams.Progress | Where-Object PercentComplete -gt 0).Count -gt 0 }

            $clock = [Diagnostics.Stopwatch]::StartNew()
            $shell.Stop()
            $clock.Stop()

            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $shell.InvocationStateInfo.State | Should -Be 'Stopped'
            $running.IsCompleted | Should -BeTrue
            Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty

            # The client is not left cancelled: the next command in that session works.
            $next = New-SimulatedAction -Simulator $simulator
            $shell.Commands.Clear()
            $null = $shell.AddScript("Save-DefenderInvestigationPackage -ActionId '$next' -Path '$folder' -PassThru")
            $saved = $shell.Invoke()
            $saved.ActionId | Should -Be $next
        } finally {
            $shell.Dispose()
        }
    }

    It 'never shows a secret or the link in its verbose, warning or error output' {
        $good = New-SimulatedAction -Simulator $simulator
        $failed = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'Failed' }
        Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'download'; action_id = $good; fault = @{ kind = 'cut_after'; bytes = 1000 } }

        $streams = $good, $failed, $good | Save-DefenderInvestigationPackage -Path $folder -Verbose -ErrorAction Continue *>&1

        $text = ($streams | ForEach-Object { "$_" }) -join "`n"
        $text | Should -BeLike '*SHA-256*' -Because 'the verbose stream says what was saved'
        @($streams | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }).Count | Should -Be 2
        Assert-NoSecret $text
    }
}

Describe 'Get-DefenderPackageUri' {
    It 'returns the action id and a fresh link to the download host' {
        $id = New-SimulatedAction -Simulator $simulator
        $link = [pscustomobject]@{ Id = $id } | Get-DefenderPackageUri
        $link.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.PackageUri'
        $link.ActionId | Should -Be $id
        $link.Uri | Should -BeLike "$($simulator.download_url)/safedownload/*.zip?token=*"
    }

    It 'shows the link without its query (the download credential) in its table view' {
        $link = Get-DefenderPackageUri -ActionId (New-SimulatedAction -Simulator $simulator)
        $shown = $link | Out-String -Width 400
        $shown | Should -BeLike "*$($simulator.download_url)/safedownload/*.zip?…*"
        $shown | Should -Not -BeLike '*token=*'
        $link.Uri | Should -BeLike '*token=*'
    }

    It 'writes Defender.NotReady, Defender.NotFound and Defender.ActionFailed, one per bad id, and goes on' {
        $pending = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 3600; in_progress_secs = 0 } }
        $unknown = '00000000-0000-4000-8000-00000000beef'
        $failed = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'TimeOut' }
        $ready = New-SimulatedAction -Simulator $simulator

        $links = $pending, $unknown, $failed, $ready | Get-DefenderPackageUri -ErrorVariable failures -ErrorAction SilentlyContinue

        $links.ActionId | Should -Be $ready
        $failures.FullyQualifiedErrorId | Should -Be @(
            'Defender.NotReady,Get-DefenderPackageUri'
            'Defender.NotFound,Get-DefenderPackageUri'
            'Defender.ActionFailed,Get-DefenderPackageUri')
        $failures.TargetObject | Should -Be @($pending, $unknown, $failed)
        $failures.CategoryInfo.Category | Should -Be @('ResourceUnavailable', 'ObjectNotFound', 'InvalidResult')
    }

    It 'is cancelled promptly by stopping the pipeline (Ctrl+C) while the service has not answered yet' {
        # No progress or log line arrives meanwhile: only the watchdog of the pipeline can cancel.
        $id = New-SimulatedAction -Simulator $simulator
        Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'get_package_uri'; action_id = $id; fault = @{ kind = 'delay'; ms = 60000 } }
        $shell = New-ConnectedShell
        try {
            # The request log shows a request only once answered, and the shell signed in when it
            # connected: give the call time to send its request, which then waits a minute.
            $null = $shell.AddScript("Get-DefenderPackageUri -ActionId '$id'")
            $running = $shell.BeginInvoke()
            Start-Sleep -Milliseconds 1500
            $running.IsCompleted | Should -BeFalse -Because 'the call waits for the service'

            $clock = [Diagnostics.Stopwatch]::StartNew()
            $shell.Stop()
            $clock.Stop()

            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $shell.InvocationStateInfo.State | Should -Be 'Stopped'
            $running.IsCompleted | Should -BeTrue
        } finally {
            $shell.Dispose()
        }
    }

    It 'stops at the first failure with -ErrorAction Stop' {
        $unknown = '00000000-0000-4000-8000-00000000f00d'
        { Get-DefenderPackageUri -ActionId $unknown -ErrorAction Stop } | Should -Throw -ErrorId 'Defender.NotFound,Get-DefenderPackageUri'
    }
}

Describe 'Machine actions' {
    It 'Get-DefenderMachineAction returns MachineAction objects with every field, shown as a table' {
        $id = New-SimulatedAction -Simulator $simulator
        $action = Get-DefenderMachineAction -ActionId $id
        $action.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.MachineAction'
        $action.id | Should -Be $id
        $action.type | Should -Be 'CollectInvestigationPackage'
        $action.status | Should -Be 'Succeeded'
        $action.machineId | Should -Be '1e5bc9d7e413ddd7902c2932e418702b84d0cc07'
        $action.PSObject.Properties.Name | Should -Contain 'requestorComment'

        $table = $action | Out-String -Width 200
        $table | Should -Match 'Id\s+Type\s+Status\s+Computer'
        $table | Should -Match "$id\s+CollectInvestigationPackage\s+Succeeded"
    }

    It 'Get-DefenderMachineAction writes Defender.NotFound for an unknown id' {
        $unknown = '00000000-0000-4000-8000-00000000cafe'
        Get-DefenderMachineAction -ActionId $unknown -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Get-DefenderMachineAction'
        $failures[0].TargetObject | Should -Be $unknown
    }

    It 'Start-DefenderInvestigationPackageCollection starts a collection that Wait and Save take from the pipeline' {
        $machine = '2a5bc9d7e413ddd7902c2932e418702b84d0cc07'
        $folder = New-TestFolder

        $action = Start-DefenderInvestigationPackageCollection -MachineId $machine -Comment 'Pester: incident 4711'

        $action.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.MachineAction'
        $action.machineId | Should -Be $machine
        $action.requestorComment | Should -Be 'Pester: incident 4711'
        $action.status | Should -BeIn 'Pending', 'InProgress'
        $done = $action | Wait-DefenderMachineAction
        $done.status | Should -Be 'Succeeded'
        $package = $done | Save-DefenderInvestigationPackage -Path $folder -PassThru
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $action.id)
    }

    It 'Start-DefenderInvestigationPackageCollection -WhatIf starts nothing, and an unknown device is Defender.NotFound' {
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        Start-DefenderInvestigationPackageCollection -MachineId '3a5bc9d7e413ddd7902c2932e418702b84d0cc07' -Comment 'x' -WhatIf
        Get-SimulatorRequest -Simulator $simulator | Should -BeNullOrEmpty

        $machines = 'not-a-device', '4a5bc9d7e413ddd7902c2932e418702b84d0cc07'
        $actions = $machines | Start-DefenderInvestigationPackageCollection -Comment 'Pester' -ErrorVariable failures -ErrorAction SilentlyContinue
        $actions.machineId | Should -Be $machines[1]
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Start-DefenderInvestigationPackageCollection'
        $failures[0].TargetObject | Should -Be 'not-a-device'
    }

    It 'Wait-DefenderMachineAction writes Defender.ActionFailed at once and Defender.Timeout after -Timeout' {
        $failed = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'Cancelled'; schedule = @{ pending_secs = 5; in_progress_secs = 5 } }
        $slow = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 36000; in_progress_secs = 0 } }

        $failed, $slow | Wait-DefenderMachineAction -Timeout 30 -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures.FullyQualifiedErrorId | Should -Be @('Defender.ActionFailed,Wait-DefenderMachineAction', 'Defender.Timeout,Wait-DefenderMachineAction')
        $failures.CategoryInfo.Category | Should -Be @('InvalidResult', 'OperationTimeout')
        $failures.TargetObject | Should -Be @($failed, $slow)
    }

    It 'Wait-DefenderMachineAction says in the verbose stream what it waits for' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 10; in_progress_secs = 10 } }
        $verbose = Wait-DefenderMachineAction -ActionId $id -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        ($verbose.Message -join "`n") | Should -BeLike "*machine action $id is Pending*"
    }
}
