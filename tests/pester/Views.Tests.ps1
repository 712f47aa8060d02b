# Tables that keep the point at 80 and 120 columns (issue 20): each view's identifying columns
# (the device and the id) whole at 80, more at 120, no line wider than the width, and a list
# view for detail.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-DefenderModulePath) -Force
    $simulator = Start-TestSimulator -ClockScale 600 -PackageSize '64KiB' -SeedMachines 20
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect -InformationAction Ignore

    $machines = @(Get-DefenderMachine -Tag Incident4711)
    $actions = @($machines | Start-DefenderInvestigationPackageCollection -Comment 'Pester: views')
    $packages = @($actions | Save-DefenderInvestigationPackage -Path (New-TestFolder) -Wait -FileNamePattern '{ComputerName}_{ActionId}.zip' -PassThru)

    function Show {
        # The objects as the console shows them at $Width columns, its lines without trailing blanks.
        param([object[]] $Item, [int] $Width, [switch] $List)
        $text = if ($List) { $Item | Format-List | Out-String -Width $Width } else { $Item | Out-String -Width $Width }
        @($text -split "`r?`n" | ForEach-Object TrimEnd | Where-Object { $_ })
    }

    function Assert-Fits {
        param([string[]] $Line, [int] $Width)
        foreach ($one in $Line) { $one.Length | Should -BeLessOrEqual $Width -Because "'$one' fits in $Width columns" }
    }
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Devices' {
    It 'at 80 columns: each device''s name and whole id on its line' {
        $lines = Show $machines 80
        Assert-Fits $lines 80
        $lines[0] | Should -Match '^ComputerDnsName\s+Id\s+Health$'
        foreach ($machine in $machines) {
            @($lines | Where-Object { $_ -match "^$([regex]::Escape($machine.computerDnsName))\s+$($machine.id)\s+Active$" }).Count | Should -Be 1
        }
    }

    It 'at 120 columns: also the platform and the group' {
        $lines = Show $machines 120
        Assert-Fits $lines 120
        $lines[0] | Should -Match '^ComputerDnsName\s+Id\s+Health\s+OsPlatform\s+Group$'
        @($lines | Where-Object { $_ -match "^srv-0011\.contoso\.test\s+$($machines[4].id)\s+Active\s+WindowsServer2022\s+Servers$" }).Count | Should -Be 1
    }

    It 'as a list: the detail' {
        $lines = Show $machines[0] 80 -List
        ($lines -join "`n") | Should -Match 'machineTags\s+: Incident4711'
        ($lines -join "`n") | Should -Match 'lastIpAddress\s+: '
    }
}

Describe 'Machine actions' {
    It 'at 80 columns: each action''s whole id, its device and its status' {
        $lines = Show $actions 80
        Assert-Fits $lines 80
        $lines[0] | Should -Match '^Id\s+Computer\s+Status$'
        foreach ($action in $actions) {
            @($lines | Where-Object { $_ -match "^$($action.id)\s+$([regex]::Escape($action.computerDnsName))\s+\w+$" }).Count | Should -Be 1
        }
    }

    It 'at 120 columns: also the whole type and when it was created' {
        $lines = Show $actions 120
        Assert-Fits $lines 120
        $lines[0] | Should -Match '^Id\s+Computer\s+Status\s+Type\s+Created UTC$'
        @($lines | Where-Object { $_ -match '\sCollectInvestigationPackage\s+\d\d-\d\d \d\d:\d\d$' }).Count | Should -Be $actions.Count
    }
}

Describe 'Saved packages' {
    It 'at 80 columns: the device and the file''s name (not its path), whole, never a column one character wide' {
        $lines = Show $packages 80
        Assert-Fits $lines 80
        $lines[0] | Should -Match '^Computer\s+File$'
        foreach ($package in $packages) {
            $file = [IO.Path]::GetFileName($package.Path)
            @($lines | Where-Object { $_ -match "^$([regex]::Escape($package.ComputerDnsName))\s+$([regex]::Escape($file))$" }).Count | Should -Be 1
            ($lines -join "`n") | Should -Not -BeLike "*$([IO.Path]::GetDirectoryName($package.Path))*"
        }
        @($lines | Where-Object { $_ -match '^\s+\S$' }).Count | Should -Be 0 -Because 'no value is printed one character a line'
    }

    It 'at 120 columns: also the size' {
        $lines = Show $packages 120
        Assert-Fits $lines 120
        $lines[0] | Should -Match '^Computer\s+File\s+Size$'
        foreach ($package in $packages) {
            $file = [IO.Path]::GetFileName($package.Path)
            @($lines | Where-Object { $_ -match "^$([regex]::Escape($package.ComputerDnsName))\s+$([regex]::Escape($file))\s+65536$" }).Count | Should -Be 1
        }
    }

    It 'as a list: the path, the SHA-256 and the ids' {
        $text = (Show $packages[0] 200 -List) -join "`n"
        $text | Should -Match "Path\s+: $([regex]::Escape($packages[0].Path))"
        $text | Should -Match "Sha256\s+: $($packages[0].Sha256)"
        $text | Should -Match "MachineId\s+: $($packages[0].MachineId)"
        $text | Should -Match "ActionId\s+: $($packages[0].ActionId)"
    }
}

Describe 'Links and connections' {
    It 'a link''s table names the action and the device, without the link''s credential' {
        $link = $actions[0] | Get-DefenderPackageUri
        $lines = Show $link 80
        Assert-Fits $lines 80
        ($lines -join "`n") | Should -Match "$($actions[0].id)\s+$([regex]::Escape($actions[0].computerDnsName))"
        ($lines -join "`n") | Should -Not -BeLike '*token=*'
    }

    It 'a connection is shown as a list' {
        $lines = Show (Get-DefenderConnection) 80
        ($lines -join "`n") | Should -Match "TenantId\s+: $($simulator.tenant_id)"
        ($lines -join "`n") | Should -Match 'TokenExpiresOn \(UTC\) : '
    }
}
