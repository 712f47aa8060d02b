# Connect-DefenderApi: each way of signing in, options, and what it keeps (never a secret).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $modulePath = Get-DefenderModulePath
    Import-Module $modulePath -Force
    $simulator = Start-TestSimulator
    $simulatorOption = Get-SimulatorOption -Simulator $simulator
    $action = New-SimulatedAction -Simulator $simulator

    function Assert-SignedInWith {
        # Looks up $action through the session's connection and checks that the one sign-in
        # request since the test began (Connect-DefenderApi's) used $Credential (secret,
        # assertion, imds, app_service), and that the command reused its token.
        param([string] $Credential, [string] $ClientId)
        Get-DefenderMachineAction -ActionId $action -ErrorAction Stop | Select-Object -ExpandProperty id | Should -Be $action
        $signIns = @(Get-SimulatorRequest -Simulator $simulator | Where-Object credential)
        $signIns.Count | Should -Be 1
        $signIns[0].credential | Should -Be $Credential
        $signIns[0].client_id | Should -Be $ClientId
        $signIns[0].status | Should -Be 200
        $signIns
    }

    function Get-SimulatorToken {
        # An access token for the simulator's app, as another tool would have obtained it.
        $form = @{
            grant_type    = 'client_credentials'
            client_id     = $simulator.client_id
            client_secret = 'simulator-secret'
            scope         = 'https://api.securitycenter.microsoft.com/.default'
        }
        (Invoke-RestMethod -Method Post -Uri "$($simulator.base_url)/$($simulator.tenant_id)/oauth2/v2.0/token" -Body $form).access_token
    }

    $certificateApp = '00000000-0000-4000-8000-0000000000c2'
    $certificate = New-TestCertificate -Subject 'CN=defender-package Pester'
    Register-SimulatorApp -Simulator $simulator -ClientId $certificateApp -Certificate $certificate
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Connect-DefenderApi' {
    BeforeEach {
        # Each test sees only its own requests, from its Connect-DefenderApi on.
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
    }

    Describe 'Connect-DefenderApi with a client secret' {
        It 'signs in with -ClientSecret when it connects' {
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            Connect-DefenderApi @connect
            $null = Assert-SignedInWith -Credential secret -ClientId $simulator.client_id
        }

        It 'signs in with -Credential (client id as user name, secret as password)' {
            $credential = [pscredential]::new($simulator.client_id, (ConvertTo-SecureString 'simulator-secret' -AsPlainText -Force))
            Connect-DefenderApi -TenantId $simulator.tenant_id -Credential $credential -BaseUri $simulator.base_url -Option $simulatorOption
            $null = Assert-SignedInWith -Credential secret -ClientId $simulator.client_id
        }

        It 'keeps no copy of the secret in the session, and says with -Verbose which library it uses' {
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            $verbose = Connect-DefenderApi @connect -Verbose 4>&1 | ForEach-Object { "$_" }
            $verbose | Should -Contain "DefenderPackage: using the defender native library $([Defender.DefenderLibrary]::Version) from '$([Defender.DefenderLibrary]::LoadedPath)'."
            # The module is compiled: the only state it keeps is the native client; it sets no variable.
            (Get-Module DefenderPackage).ExportedVariables.Count | Should -Be 0
            Assert-NoSecret ((Get-Variable | Out-String -Width 500) + ($verbose -join "`n"))
        }

        It 'stops at a wrong secret with Defender.Unauthorized, the service''s reason and never the secret' {
            $wrong = 'wrong-secret-f7d1c0e2'
            $failure = $null
            $streams = try {
                Connect-DefenderApi -TenantId $simulator.tenant_id -ClientId $simulator.client_id `
                    -ClientSecret (ConvertTo-SecureString $wrong -AsPlainText -Force) `
                    -BaseUri $simulator.base_url -Option $simulatorOption -Verbose -Debug *>&1
            } catch {
                $failure = $_
            }

            $failure | Should -Not -BeNullOrEmpty -Because 'a wrong secret fails Connect-DefenderApi itself'
            $failure.FullyQualifiedErrorId | Should -Be 'Defender.Unauthorized,Defender.PowerShell.Commands.ConnectDefenderApiCommand'
            $failure.CategoryInfo.Category | Should -Be 'AuthenticationError'
            $failure.Exception.Message | Should -BeLike '*AADSTS7000215*'
            Get-SimulatorRequest -Simulator $simulator -Endpoint get_package_uri | Should -BeNullOrEmpty
            Assert-NoSecret ((@($streams) + $failure | ForEach-Object { "$_" }) -join "`n") -Secret $wrong
        }
    }

    Describe 'Connect-DefenderApi with an access token' {
        It 'uses -AccessToken as it is, without signing in' {
            $token = Get-SimulatorToken
            $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
            Connect-DefenderApi -AccessToken (ConvertTo-SecureString $token -AsPlainText -Force) -BaseUri $simulator.base_url -Option $simulatorOption

            (Get-DefenderMachineAction -ActionId $action -ErrorAction Stop).id | Should -Be $action
            Get-SimulatorRequest -Simulator $simulator -Endpoint token | Should -BeNullOrEmpty
        }
    }

    Describe 'Connect-DefenderApi with a certificate' {
        It 'signs a client assertion from the certificate store that the token endpoint accepts' {
            $audience = "$($simulator.base_url)/$($simulator.tenant_id)/oauth2/v2.0/token"
            $assertion = [Defender.ClientAssertion]::Create($certificate, $audience, $certificateApp, [TimeSpan]::FromMinutes(10))
            $form = @{
                grant_type            = 'client_credentials'
                client_id             = $certificateApp
                client_assertion_type = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
                client_assertion      = $assertion
                scope                 = 'https://api.securitycenter.microsoft.com/.default'
            }
            $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests

            $token = Invoke-RestMethod -Method Post -Uri "$($simulator.base_url)/$($simulator.tenant_id)/oauth2/v2.0/token" -Body $form

            $token.access_token | Should -Not -BeNullOrEmpty
            $claims = (Get-SimulatorRequest -Simulator $simulator -Endpoint token)[0].claims
            $claims.aud | Should -Be $audience
            $claims.iss | Should -Be $certificateApp
            $claims.sub | Should -Be $certificateApp
            $claims.exp - $claims.nbf | Should -Be 600
            $claims.x5t | Should -Be ([Convert]::ToBase64String($certificate.GetCertHash()).TrimEnd('=').Replace('+', '-').Replace('/', '_'))
        }

        It 'signs in with -CertificateThumbprint from CurrentUser\My' {
            $store = [Security.Cryptography.X509Certificates.X509Store]::new('My', 'CurrentUser')
            $store.Open('ReadWrite')
            $store.Add($certificate)
            try {
                Connect-DefenderApi -TenantId $simulator.tenant_id -ClientId $certificateApp -CertificateThumbprint $certificate.Thumbprint.ToLowerInvariant() `
                    -BaseUri $simulator.base_url -Option $simulatorOption
                $signIn = Assert-SignedInWith -Credential assertion -ClientId $certificateApp
                $signIn.claims.aud | Should -Be "$($simulator.base_url)/$($simulator.tenant_id)/oauth2/v2.0/token"

                # Each command hands over a fresh assertion; the library keeps its token.
                (Get-DefenderMachineAction -ActionId $action -ErrorAction Stop).id | Should -Be $action
                @(Get-SimulatorRequest -Simulator $simulator -Endpoint token).Count | Should -Be 1
            } finally {
                $store.Remove($certificate)
                $store.Dispose()
            }
        }

        It 'signs a fresh assertion with -CertificateThumbprint whenever the token is renewed, also in the middle of a long -Wait' {
            # Tokens live 2 s; the collection takes about 4 s (at the simulator's clock): the token
            # expires during the wait and is renewed with a new assertion, instead of failing Unauthorized.
            $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ token_lifetime_secs = 2 }
            $store = [Security.Cryptography.X509Certificates.X509Store]::new('My', 'CurrentUser')
            $store.Open('ReadWrite')
            $store.Add($certificate)
            try {
                Connect-DefenderApi -TenantId $simulator.tenant_id -ClientId $certificateApp -CertificateThumbprint $certificate.Thumbprint `
                    -BaseUri $simulator.base_url -Option $simulatorOption
                $slow = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 120; in_progress_secs = 120 } }

                $package = Save-DefenderInvestigationPackage -ActionId $slow -Path (New-TestFolder) -Wait -PassThru -ErrorAction Stop

                $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $slow)
                $signIns = @(Get-SimulatorRequest -Simulator $simulator -Endpoint token)
                $signIns.Count | Should -BeGreaterOrEqual 3 -Because 'the token was renewed during the wait'
                $signIns.status | Sort-Object -Unique | Should -Be 200
                @($signIns.claims.jti | Sort-Object -Unique).Count | Should -Be $signIns.Count -Because 'each renewal signed a new assertion'
                @(Get-SimulatorRequest -Simulator $simulator | Where-Object status -eq 401).Count | Should -Be 0
            } finally {
                $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ token_lifetime_secs = 3600 }
                $store.Remove($certificate)
                $store.Dispose()
            }
        }

        It 'reports an unknown thumbprint as Defender.CertificateNotFound' {
            { Connect-DefenderApi -TenantId $simulator.tenant_id -ClientId $certificateApp -CertificateThumbprint ('AB' * 20) -BaseUri $simulator.base_url } |
                Should -Throw -ErrorId 'Defender.CertificateNotFound,Defender.PowerShell.Commands.ConnectDefenderApiCommand'
        }

        It 'signs in with -CertificatePath (PEM with the certificate and its key), relative to the current location' {
            $folder = New-TestFolder
            $pem = $certificate.ExportCertificatePem() + "`n" + [Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($certificate).ExportPkcs8PrivateKeyPem()
            Set-Content -LiteralPath (Join-Path $folder 'app.pem') -Value $pem
            Push-Location $folder
            try {
                Connect-DefenderApi -TenantId $simulator.tenant_id -ClientId $certificateApp -CertificatePath ./app.pem -BaseUri $simulator.base_url -Option $simulatorOption
            } finally {
                Pop-Location
            }
            $null = Assert-SignedInWith -Credential assertion -ClientId $certificateApp
        }
    }

    Describe 'Connect-DefenderApi with a managed identity' {
        It 'signs in with -Identity (system-assigned) through IMDS' {
            $imds = "$($simulator.base_url)/metadata/identity/oauth2/token"
            Connect-DefenderApi -Identity -BaseUri $simulator.base_url -Option ($simulatorOption + @{ managed_identity_endpoint = $imds })
            $null = Assert-SignedInWith -Credential imds -ClientId '00000000-0000-4000-8000-0000000000a1'
        }

        It 'signs in with -Identity -ClientId (user-assigned) through IMDS' {
            $identity = '00000000-0000-4000-8000-0000000000a7'
            $null = Invoke-SimulatorControl -Simulator $simulator -Path identities -Body @{ client_id = $identity }
            $imds = "$($simulator.base_url)/metadata/identity/oauth2/token"
            Connect-DefenderApi -Identity -ClientId $identity -BaseUri $simulator.base_url -Option ($simulatorOption + @{ managed_identity_endpoint = $imds })
            $null = Assert-SignedInWith -Credential imds -ClientId $identity
        }

        It 'signs in with -Identity in Azure Automation (IDENTITY_ENDPOINT and IDENTITY_HEADER)' {
            # The library reads the process environment, so the runbook runs in a process of its own.
            $runbook = "Import-Module '$modulePath'; Connect-DefenderApi -Identity -BaseUri '$($simulator.base_url)' -Option @{ rate_limit = 'off' } -InformationAction Ignore; " +
            "(Get-DefenderMachineAction -ActionId '$action' -ErrorAction Stop).status"
            $start = New-ChildPowerShell -Command $runbook
            $start.Environment['IDENTITY_ENDPOINT'] = $simulator.identity_endpoint
            $start.Environment['IDENTITY_HEADER'] = $simulator.identity_header
            $start.Environment['NO_COLOR'] = '1'
            $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
            $process = [Diagnostics.Process]::Start($start)
            $errors = $process.StandardError.ReadToEndAsync()
            $output = $process.StandardOutput.ReadToEnd()
            $process.WaitForExit()

            $output.Trim() | Should -Be 'Succeeded' -Because $errors.Result
            (Get-SimulatorRequest -Simulator $simulator | Where-Object credential).credential | Should -Be 'app_service'
        }
    }

    Describe 'Connect-DefenderApi options' {
        It 'hands -Option values to the library as text: $true, numbers' {
            $folder = New-TestFolder
            $path = Join-Path $folder "$action.zip"
            Set-Content -LiteralPath $path -Value 'an older copy'
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            $connect.Option.overwrite = $true
            $connect.Option.timeout_ms = 30000
            Connect-DefenderApi @connect

            $package = Save-DefenderInvestigationPackage -ActionId $action -Path $folder -PassThru -ErrorAction Stop

            $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $action)
        }

        It 'applies timeout_ms: a slow answer is Defender.Timeout' {
            $slow = New-SimulatedAction -Simulator $simulator
            Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'machine_action'; action_id = $slow; fault = @{ kind = 'delay'; ms = 3000 } }
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            $connect.Option.timeout_ms = 300
            Connect-DefenderApi @connect

            Get-DefenderMachineAction -ActionId $slow -ErrorVariable failures -ErrorAction SilentlyContinue

            $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.Timeout,Defender.PowerShell.Commands.GetDefenderMachineActionCommand'
        }

        It 'refuses an unknown option, naming it and the known ones, and leaves no connection, saying so' {
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            Connect-DefenderApi @connect
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            $connect.Option.time_out = 5

            { Connect-DefenderApi @connect } | Should -Throw -ErrorId 'Defender.UnknownOption,Defender.PowerShell.Commands.ConnectDefenderApiCommand' -ExpectedMessage "*'time_out'*timeout_ms*Not connected*previous connection*"

            { Get-DefenderMachineAction -ActionId $action } | Should -Throw -ErrorId 'Defender.NotConnected,*'
        }

        It 'lists in an unknown option''s error every key -Option takes, in the InvalidArgument category' {
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            $connect.Option.time_out = 5
            try { Connect-DefenderApi @connect; throw 'no error' } catch { $failure = $_ }

            $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
            $listed = (($failure.Exception.Message -split '; the keys are: ')[1] -split '\. ')[0].TrimEnd('.') -split ', '
            $listed | Should -Contain 'max_concurrent_downloads'
            $listed | Should -Not -Contain 'client_secret' # a parameter sets it
            # Each of the library's keys is either listed or refused for the parameter that sets it.
            foreach ($key in [Defender.DefenderClient]::OptionNames | Where-Object { $_ -notin $listed }) {
                $connect.Option = @{ $key = 'x' }
                { Connect-DefenderApi @connect } | Should -Throw -ErrorId 'Defender.InvalidArgument,*' -ExpectedMessage "*may not set '$key': use *"
            }
            $listed | Where-Object { $_ -notin [Defender.DefenderClient]::OptionNames } | Should -BeNullOrEmpty
        }

        It 'completes -Option''s keys from the library, with each key''s description' {
            $line = 'Connect-DefenderApi -Option max_c'
            $completions = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches

            $completions.CompletionText | Should -Be @('@{ max_concurrent_downloads = ')
            $completions[0].ToolTip | Should -BeLike '*defender_download_packages*(default 4)'
            $line = 'Connect-DefenderApi -Option '
            $all = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.ListItemText
            $all | Should -Contain 'timeout_ms'
            $all | Should -Not -Contain 'client_secret'
        }

        It 'offers in -Cloud exactly the clouds the library has, in its order' {
            $line = [Defender.DefenderClient]::OptionDescription('cloud') -replace ' \(default [^)]*\)$', ''
            $clouds = ($line -split ': ')[-1] -replace ' or ', ', ' -split ', '
            $set = (Get-Command Connect-DefenderApi).Parameters['Cloud'].Attributes | Where-Object { $_ -is [System.Management.Automation.ValidateSetAttribute] }

            $clouds | Should -Contain 'gcc-high'
            @($set.ValidValues | ForEach-Object { $_.ToLowerInvariant() }) | Should -Be $clouds
        }

        It 'names a status of the library by the library''s name in the ErrorId: UNKNOWN_OPTION is Defender.UnknownOption' {
            $record = [Defender.PowerShell.DefenderErrors]::ToErrorRecord([Defender.DefenderException]::new([Defender.DefenderStatus]::UnknownOption, 'x'), $null)

            $record.FullyQualifiedErrorId | Should -Be 'Defender.UnknownOption'
            $record.CategoryInfo.Category | Should -Be 'InvalidArgument'
            [Defender.DefenderClient]::StatusName([Defender.DefenderStatus]::UnknownOption) | Should -Be 'UNKNOWN_OPTION'
        }

        It 'refuses an option that a parameter sets, naming the parameter' {
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            $connect.Option.client_secret = 'not here'
            { Connect-DefenderApi @connect } | Should -Throw -ErrorId 'Defender.InvalidArgument,Defender.PowerShell.Commands.ConnectDefenderApiCommand' -ExpectedMessage '*-ClientSecret*'
        }

        It 'refuses a malformed value without repeating a secret, before any request' {
            { Connect-DefenderApi -AccessToken (ConvertTo-SecureString "line`nbreak" -AsPlainText -Force) -BaseUri $simulator.base_url } |
                Should -Throw -ErrorId 'Defender.InvalidArgument,Defender.PowerShell.Commands.ConnectDefenderApiCommand' -ExpectedMessage "*access_token*not shown*"
            { Connect-DefenderApi -AccessToken (ConvertTo-SecureString 'x' -AsPlainText -Force) -BaseUri 'http://example.com' } |
                Should -Throw -ErrorId 'Defender.InvalidArgument,Defender.PowerShell.Commands.ConnectDefenderApiCommand' -ExpectedMessage "*base_url*https*"
        }
    }

    Describe 'Disconnect-DefenderApi' {
        It 'ends the connection: commands then fail with Defender.NotConnected until Connect-DefenderApi' {
            $connect = Get-SimulatorConnectParameters -Simulator $simulator
            Connect-DefenderApi @connect
            Disconnect-DefenderApi
            Disconnect-DefenderApi

            { Get-DefenderMachineAction -ActionId $action } | Should -Throw -ErrorId 'Defender.NotConnected,Defender.PowerShell.Commands.GetDefenderMachineActionCommand' -ExpectedMessage '*Connect-DefenderApi*'
            { Save-DefenderInvestigationPackage -ActionId $action -Path (New-TestFolder) } | Should -Throw -ErrorId 'Defender.NotConnected,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        }
    }
}
