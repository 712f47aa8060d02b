# Which tenant am I on (issue 20): Get-DefenderConnection; a connect that fails leaves none and
# says so; connections as objects (-PassThru, -Connection) with two simulators as two tenants in
# one runspace; the default connection in ForEach-Object -Parallel and thread jobs; Remove-Module
# disconnects; sign-in from the session's environment (-EnvironmentVariable, -Identity with
# $env:) and from an X509Certificate2 (-Certificate).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $modulePath = Get-DefenderModulePath
    Import-Module $modulePath -Force
    $simulator = Start-TestSimulator
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    $action = New-SimulatedAction -Simulator $simulator

    # A second simulator as a second tenant, with an app of its own.
    $other = Start-TestSimulator
    $otherTenant = '00000000-0000-4000-8000-0000000f0b0c'
    $otherApp = '00000000-0000-4000-8000-0000000f0b0a'
    Register-SimulatorApp -Simulator $other -ClientId $otherApp -ClientSecret 'fabrikam-secret' -TenantId $otherTenant
    $otherConnect = @{
        TenantId     = $otherTenant
        ClientId     = $otherApp
        ClientSecret = ConvertTo-SecureString 'fabrikam-secret' -AsPlainText -Force
        BaseUri      = $other.base_url
        Option       = (Get-SimulatorOption -Simulator $other)
    }
    $otherAction = New-SimulatedAction -Simulator $other

    function Set-TestEnvironment {
        # Sets (or with $null removes) the session's environment variables; returns what they were.
        param([hashtable] $Variable)
        $before = @{}
        foreach ($name in $Variable.Keys) {
            $before[$name] = [Environment]::GetEnvironmentVariable($name)
            [Environment]::SetEnvironmentVariable($name, $Variable[$name])
        }
        $before
    }
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Stop-TestSimulator -Simulator $other
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Get-DefenderConnection' {
    It 'shows the tenant, the app, how it signs in, the cloud, the API root and the token''s expiry' {
        $before = [DateTime]::UtcNow
        Connect-DefenderApi @connect -InformationAction Ignore
        $connection = Get-DefenderConnection

        $connection | Should -BeOfType ([Defender.PowerShell.DefenderConnection])
        $connection.TenantId | Should -Be $simulator.tenant_id
        $connection.ClientId | Should -Be $simulator.client_id
        $connection.SignIn | Should -Be 'ClientSecret'
        $connection.Cloud | Should -Be 'Commercial'
        $connection.ApiRoot | Should -Be ([uri]"$($simulator.base_url)/")
        $connection.TokenExpiresOn | Should -BeGreaterThan $before.AddMinutes(50)
        $connection.TokenExpiresOn.Kind | Should -Be 'Utc'
        $connection.IsDefault | Should -BeTrue
        $connection.IsConnected | Should -BeTrue
        $shown = $connection | Out-String -Width 120
        $shown | Should -Match ('TenantId\s+: ' + [regex]::Escape($simulator.tenant_id))
        $shown | Should -Match 'TokenExpiresOn \(UTC\)\s+: '
        Assert-NoSecret ($shown + ($connection | ConvertTo-Json))
    }

    It 'says on the screen which tenant and app it connected to, and nothing with -InformationAction Ignore' {
        $said = Connect-DefenderApi @connect 6>&1
        "$said" | Should -BeLike "Connected to the Defender for Endpoint API as app $($simulator.client_id) in tenant $($simulator.tenant_id) at $($simulator.base_url)/ (sign-in: ClientSecret; its token is good until * UTC*"
        Connect-DefenderApi @connect -InformationAction Ignore 6>&1 | Should -BeNullOrEmpty
    }

    It 'returns nothing when not connected' {
        Connect-DefenderApi @connect -InformationAction Ignore
        Disconnect-DefenderApi
        Get-DefenderConnection | Should -BeNullOrEmpty
        (Get-DefenderConnection -Verbose 4>&1 | ForEach-Object { "$_" }) | Should -BeLike '*Not connected*'
    }
}

Describe 'A connect that fails' {
    It 'with a wrong secret leaves no connection, says so, and no command goes to the previous tenant' {
        Connect-DefenderApi @connect -InformationAction Ignore
        $wrong = $connect.Clone()
        $wrong.ClientSecret = ConvertTo-SecureString 'wrong-secret-6b1c' -AsPlainText -Force
        $failure = $null
        try { Connect-DefenderApi @wrong } catch { $failure = $_ }

        $failure.FullyQualifiedErrorId | Should -Be 'Defender.Unauthorized,Defender.PowerShell.Commands.ConnectDefenderApiCommand'
        $failure.Exception | Should -BeOfType ([Defender.DefenderException])
        $failure.Exception.Message | Should -BeLike "*AADSTS7000215* Not connected: commands no longer use the previous connection (app $($simulator.client_id) in tenant*"
        $failure.ErrorDetails.RecommendedAction | Should -BeLike '*Connect-DefenderApi*'
        Get-DefenderConnection | Should -BeNullOrEmpty
        { Get-DefenderMachineAction -ActionId $action } | Should -Throw -ErrorId 'Defender.NotConnected,*'
        Assert-NoSecret "$failure" -Secret 'wrong-secret-6b1c'
    }

    It 'with a tenant that does not exist is Defender.InvalidArgument with Entra''s whole sentence' {
        $wrong = $connect.Clone()
        $wrong.TenantId = '00000000-0000-4000-8000-00000000bad0'
        { Connect-DefenderApi @wrong } | Should -Throw -ErrorId 'Defender.InvalidArgument,*' -ExpectedMessage "*AADSTS90002*signing into the correct cloud. Not connected.*"
    }

    It 'with -Identity where no managed identity answers leaves no connection either, naming the host it tried' {
        Connect-DefenderApi @connect -InformationAction Ignore
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $listener.Start()
        $closed = $listener.LocalEndpoint.Port
        $listener.Stop()
        $nowhere = "http://127.0.0.1:$closed/metadata/identity/oauth2/token"
        { Connect-DefenderApi -Identity -BaseUri $simulator.base_url -Option @{ managed_identity_endpoint = $nowhere } } |
            Should -Throw -ErrorId 'Defender.Network,*' -ExpectedMessage "*127.0.0.1:$closed*Not connected*"
        Get-DefenderConnection | Should -BeNullOrEmpty
    }
}

Describe 'A network failure' {
    It 'names the host that could not be reached' {
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
        $listener.Start()
        $closed = $listener.LocalEndpoint.Port
        $listener.Stop()
        $token = ConvertTo-SecureString 'a-token-from-elsewhere' -AsPlainText -Force
        $nowhere = Connect-DefenderApi -AccessToken $token -BaseUri "http://127.0.0.1:$closed" -Option @{ timeout_ms = 3000 } -PassThru
        Get-DefenderMachineAction -ActionId $action -Connection $nowhere -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.Network,*'
        $failures[0].Exception.Message | Should -BeLike "*could not connect to http://127.0.0.1:$closed *"
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*host named in the message*'
        Disconnect-DefenderApi -Connection $nowhere
    }
}

Describe 'Connections as objects' {
    It 'two simulators as two tenants in one runspace: each command goes where its -Connection says' {
        $contoso = Connect-DefenderApi @connect -PassThru
        $fabrikam = Connect-DefenderApi @otherConnect -PassThru
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        $null = Invoke-SimulatorControl -Simulator $other -Method Delete -Path requests

        $contoso.TenantId | Should -Be $simulator.tenant_id
        $fabrikam.TenantId | Should -Be $otherTenant
        (Get-DefenderConnection).TenantId | Should -Be $otherTenant -Because 'the last connect is the default'
        $fabrikam.IsDefault | Should -BeTrue
        $contoso.IsDefault | Should -BeFalse

        (Get-DefenderMachineAction -ActionId $action -Connection $contoso).id | Should -Be $action
        (Get-DefenderMachineAction -ActionId $otherAction -Connection $fabrikam).id | Should -Be $otherAction
        (Get-DefenderMachineAction -ActionId $otherAction).id | Should -Be $otherAction
        Get-DefenderMachineAction -ActionId $action -Connection $fabrikam -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.NotFound,*' -Because 'that action is in the other tenant'
        $saved = $action | Save-DefenderInvestigationPackage -Path (New-TestFolder) -Connection $contoso -PassThru
        $saved.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $action)

        @(Get-SimulatorRequest -Simulator $simulator -Endpoint machine_action).action_id | Sort-Object -Unique | Should -Be $action
        @(Get-SimulatorRequest -Simulator $other -Endpoint machine_action).action_id | Sort-Object -Unique | Should -Be (@($action, $otherAction) | Sort-Object)
        @(Get-SimulatorRequest -Simulator $other -Endpoint download).Count | Should -Be 0

        Disconnect-DefenderApi -Connection $contoso
        $contoso.IsConnected | Should -BeFalse
        { Get-DefenderMachineAction -ActionId $action -Connection $contoso } | Should -Throw -ErrorId 'Defender.NotConnected,*' -ExpectedMessage '*was ended by Disconnect-DefenderApi*'
        (Get-DefenderMachineAction -ActionId $otherAction).id | Should -Be $otherAction -Because 'the default is the other one'
        $fabrikam | Disconnect-DefenderApi
    }

    It 'reaches ForEach-Object -Parallel and thread jobs; with several runspaces connected, the error says to pass it' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
        Connect-DefenderApi @connect -InformationAction Ignore
        $ids = 1..3 | ForEach-Object { New-SimulatedAction -Simulator $simulator }

        # The one connection of the process, borrowed by runspaces that never connected.
        # (Each imports the module by its path, as PowerShell would by its name from the module path.)
        $found = $ids | ForEach-Object -Parallel { Import-Module $using:modulePath; (Get-DefenderMachineAction -ActionId $_ -ErrorAction Stop).id } -ThrottleLimit 3
        @($found | Sort-Object) | Should -Be @($ids | Sort-Object)
        if (Get-Command Start-ThreadJob -ErrorAction SilentlyContinue) {
            $job = Start-ThreadJob { Import-Module $using:modulePath; (Get-DefenderMachineAction -ActionId $using:action -ErrorAction Stop).status }
            $job | Wait-Job | Receive-Job -ErrorAction Stop | Should -Be 'Succeeded'
            $job | Remove-Job
        }

        # Another runspace connected elsewhere: which is meant cannot be told, so the command
        # stops and says how to pass it; -Connection $using: works.
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($module, $connect) Import-Module $module; Connect-DefenderApi @connect -InformationAction Ignore').
            AddArgument($modulePath).AddArgument($otherConnect)
            $shell.Invoke()
            $failures = $ids[0] | ForEach-Object -Parallel {
                Import-Module $using:modulePath
                try { Get-DefenderMachineAction -ActionId $_ -ErrorAction Stop } catch { $_ }
            }
            $failures.FullyQualifiedErrorId | Should -Be 'Defender.NotConnected,Defender.PowerShell.Commands.GetDefenderMachineActionCommand'
            "$failures" | Should -BeLike '*2 connections of other runspaces*-Connection $using:connection*'
            $connection = Get-DefenderConnection
            ($ids[0] | ForEach-Object -Parallel { Import-Module $using:modulePath; (Get-DefenderMachineAction -ActionId $_ -Connection $using:connection).id }) | Should -Be $ids[0]
        } finally {
            $shell.Dispose()
        }
    }

    It 'a failed connect also ends what a runspace that never connected would borrow' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
        Connect-DefenderApi @connect -InformationAction Ignore
        $wrong = $connect.Clone()
        $wrong.ClientSecret = ConvertTo-SecureString 'wrong-secret-9d2e' -AsPlainText -Force
        { Connect-DefenderApi @wrong } | Should -Throw
        $failure = 1 | ForEach-Object -Parallel { Import-Module $using:modulePath; try { Get-DefenderMachineAction -ActionId $using:action -ErrorAction Stop } catch { $_ } }
        $failure.FullyQualifiedErrorId | Should -BeLike 'Defender.NotConnected,*'
    }

    It 'Remove-Module ends the connections its runspace opened' {
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($module, $connect) Import-Module $module; Connect-DefenderApi @connect -PassThru').
            AddArgument($modulePath).AddArgument($connect)
            $connection = $shell.Invoke()[0]
            $connection.IsConnected | Should -BeTrue
            $shell.Commands.Clear()
            $null = $shell.AddScript('param($module) Remove-Module DefenderPackage; Import-Module $module; Get-DefenderConnection').AddArgument($modulePath)
            $after = $shell.Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
        } finally {
            $shell.Dispose()
        }
        $connection.IsConnected | Should -BeFalse
        $after | Should -BeNullOrEmpty -Because 'no connection is left to borrow either'
    }
}

Describe 'Signing in from the session' {
    BeforeEach {
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
    }

    It '-EnvironmentVariable signs in as the app in AZURE_* set with $env:, and names what is missing' {
        $saved = Set-TestEnvironment @{
            AZURE_TENANT_ID = $simulator.tenant_id; AZURE_CLIENT_ID = $simulator.client_id; AZURE_CLIENT_SECRET = 'simulator-secret'
            AZURE_CLIENT_CERTIFICATE_PATH = $null; AZURE_AUTHORITY_HOST = $simulator.base_url
        }
        try {
            $connection = Connect-DefenderApi -EnvironmentVariable -BaseUri $simulator.base_url -Option @{ rate_limit = 'off' } -PassThru
            $connection.SignIn | Should -Be 'EnvironmentVariable (ClientSecret)'
            $connection.TenantId | Should -Be $simulator.tenant_id
            (Get-DefenderMachineAction -ActionId $action).id | Should -Be $action
            (Get-SimulatorRequest -Simulator $simulator -Endpoint token).credential | Should -Be 'secret'

            $null = Set-TestEnvironment @{ AZURE_CLIENT_SECRET = $null; AZURE_CLIENT_ID = $null }
            { Connect-DefenderApi -EnvironmentVariable -BaseUri $simulator.base_url } |
                Should -Throw -ErrorId 'Defender.InvalidArgument,*' -ExpectedMessage '*not set: AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH.*'
        } finally {
            $null = Set-TestEnvironment $saved
        }
    }

    It '-Identity uses IDENTITY_ENDPOINT and IDENTITY_HEADER set with $env: (App Service, Automation)' {
        $saved = Set-TestEnvironment @{ IDENTITY_ENDPOINT = $simulator.identity_endpoint; IDENTITY_HEADER = $simulator.identity_header }
        try {
            $connection = Connect-DefenderApi -Identity -BaseUri $simulator.base_url -Option @{ rate_limit = 'off' } -PassThru
            $connection.SignIn | Should -Be 'ManagedIdentity'
            (Get-DefenderMachineAction -ActionId $action).id | Should -Be $action
            (Get-SimulatorRequest -Simulator $simulator | Where-Object credential).credential | Should -Be 'app_service'
            Assert-NoSecret ($connection | Out-String) -Secret $simulator.identity_header
        } finally {
            $null = Set-TestEnvironment $saved
        }
    }

    # Not under Wine (tests/windows/suite.sh): making the test certificate needs CNG.
    It '-Certificate signs assertions with an X509Certificate2, and refuses one without its private key' -Tag CngCertificates {
        $certificateApp = '00000000-0000-4000-8000-0000000000c9'
        $certificate = New-TestCertificate -Subject 'CN=defender-package -Certificate'
        Register-SimulatorApp -Simulator $simulator -ClientId $certificateApp -Certificate $certificate
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests

        $connection = Connect-DefenderApi -TenantId $simulator.tenant_id -ClientId $certificateApp -Certificate $certificate `
            -BaseUri $simulator.base_url -Option (Get-SimulatorOption -Simulator $simulator) -PassThru
        $connection.SignIn | Should -Be 'Certificate'
        (Get-DefenderMachineAction -ActionId $action).id | Should -Be $action
        $signIn = Get-SimulatorRequest -Simulator $simulator -Endpoint token
        $signIn.credential | Should -Be 'assertion'
        $signIn.claims.x5t | Should -Be ([Convert]::ToBase64String($certificate.GetCertHash()).TrimEnd('=').Replace('+', '-').Replace('/', '_'))

        $public = [Security.Cryptography.X509Certificates.X509Certificate2]::new($certificate.RawData)
        { Connect-DefenderApi -TenantId $simulator.tenant_id -ClientId $certificateApp -Certificate $public -BaseUri $simulator.base_url } |
            Should -Throw -ErrorId 'Defender.CertificateWithoutKey,*' -ExpectedMessage '*has no private key*'
    }
}
