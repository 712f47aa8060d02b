function Connect-DefenderApi {
    <#
    .SYNOPSIS
    Connects this session to the Microsoft Defender for Endpoint API.

    .DESCRIPTION
    Creates the session's client of the Defender for Endpoint API, which every other command of
    the module uses, and configures how it signs in. Parameter sets follow Connect-MgGraph:

    - an app's client secret: -TenantId -ClientId -ClientSecret, or -TenantId -Credential (user
      name = client id, password = secret);
    - an app's certificate: -CertificatePath (a PEM file with the certificate and its private
      key), or -CertificateThumbprint (a certificate in CurrentUser\My or LocalMachine\My whose
      key never leaves the store: the module signs short-lived client assertions with it);
    - a managed identity: -Identity, with -ClientId for a user-assigned one (Azure Automation,
      Functions, App Service, virtual machines);
    - an access token obtained elsewhere: -AccessToken.

    It signs in at once, so that wrong credentials, a missing managed identity or an unreadable
    certificate fail here, as a terminating error (an -AccessToken is not checked: only the API
    can tell). The token is kept for the commands that follow and renewed as needed.
    The app needs the application permissions Machine.CollectForensics and Machine.Read.All on
    "WindowsDefenderATP".

    Connecting again replaces the session's connection; Disconnect-DefenderApi ends it. Secrets
    are handed to the native library without being written anywhere, and never appear in its
    messages.

    .PARAMETER TenantId
    The Microsoft Entra tenant (directory) id, or its domain name.

    .PARAMETER ClientId
    The application (client) id of the app registration. With -Identity: the client id of a
    user-assigned managed identity (without it, the system-assigned identity is used).

    .PARAMETER ClientSecret
    The app's client secret, as a SecureString (Read-Host -AsSecureString, or
    Get-Secret from Microsoft.PowerShell.SecretManagement).

    .PARAMETER Credential
    The app's client id as user name and its client secret as password.

    .PARAMETER CertificatePath
    A PEM file holding the app's certificate and its RSA private key.

    .PARAMETER CertificateThumbprint
    The thumbprint of the app's certificate in the CurrentUser\My or LocalMachine\My store. Its
    private key must be usable by this process.

    .PARAMETER Identity
    Sign in with the managed identity of the Azure resource this runs on.

    .PARAMETER AccessToken
    A bearer token for the Defender for Endpoint API, used as it is (it is not renewed).

    .PARAMETER Cloud
    The Microsoft cloud: Commercial (default); US, EU, UK, AU, SWA or INA (the regional API hosts
    of the commercial cloud); GCC, GCC-High or DoD. Sets the API host, the sign-in authority and
    the token scope together.

    .PARAMETER BaseUri
    The API root, overriding the cloud's (e.g. https://eu.api.security.microsoft.com, or a local
    defender-simulator).

    .PARAMETER Option
    Any other option of the native library, as key = value: timeout_ms, connect_timeout_ms,
    wait_timeout_ms, ca_file, user_agent, rate_limit, clock_scale, authority_url, scope,
    managed_identity_endpoint, overwrite. Values are passed as text ($true as 'true'); $null
    keeps the default. Keys that a parameter sets (tenant_id, client_secret, base_url, ...) are
    refused: use the parameter.

    .EXAMPLE
    PS> $secret = Read-Host -AsSecureString -Prompt 'Client secret'
    PS> Connect-DefenderApi -TenantId contoso.onmicrosoft.com -ClientId 6f2f2b8a-0000-4000-8000-000000000000 -ClientSecret $secret

    Connects with an app's client secret typed at a prompt.

    .EXAMPLE
    PS> Connect-DefenderApi -TenantId $tenantId -Credential (Get-Credential -UserName $appId -Message 'Client secret')

    Connects with the client id and secret held in a PSCredential.

    .EXAMPLE
    PS> Connect-DefenderApi -TenantId $tenantId -ClientId $appId -CertificateThumbprint 1F2E3D4C5B6A79880706F5E4D3C2B1A098765432

    Connects with a certificate from the current user's certificate store.

    .EXAMPLE
    PS> Connect-DefenderApi -Identity

    Connects with the system-assigned managed identity, as an Azure Automation runbook does.
    Add -ClientId for a user-assigned identity.

    .EXAMPLE
    PS> $sim = & ./target/debug/defender-simulator --seed-actions 1 | Select-Object -First 1 | ConvertFrom-Json
    PS> Connect-DefenderApi -TenantId $sim.tenant_id -ClientId $sim.client_id -ClientSecret (ConvertTo-SecureString 'simulator-secret' -AsPlainText -Force) -BaseUri $sim.base_url -Option @{ authority_url = $sim.base_url }

    Connects to a local defender-simulator (whose secret is a published constant, not a secret)
    to try a script without a tenant.

    .EXAMPLE
    PS> Connect-DefenderApi -Identity -Cloud GCC-High -Option @{ timeout_ms = 120000; ca_file = '/etc/ssl/proxy-ca.pem' }

    Connects in the GCC High cloud through a TLS-inspecting proxy, with a longer request timeout.

    .OUTPUTS
    None.

    .LINK
    Disconnect-DefenderApi

    .LINK
    Save-DefenderInvestigationPackage
    #>
    [CmdletBinding(DefaultParameterSetName = 'ClientSecret')]
    [OutputType([void])]
    param(
        [Parameter(Mandatory, ParameterSetName = 'ClientSecret')]
        [Parameter(Mandatory, ParameterSetName = 'Credential')]
        [Parameter(Mandatory, ParameterSetName = 'CertificatePath')]
        [Parameter(Mandatory, ParameterSetName = 'CertificateThumbprint')]
        [ValidateNotNullOrEmpty()]
        [string] $TenantId,

        [Parameter(Mandatory, ParameterSetName = 'ClientSecret')]
        [Parameter(Mandatory, ParameterSetName = 'CertificatePath')]
        [Parameter(Mandatory, ParameterSetName = 'CertificateThumbprint')]
        [Parameter(ParameterSetName = 'Identity')]
        [ValidateNotNullOrEmpty()]
        [string] $ClientId,

        [Parameter(Mandatory, ParameterSetName = 'ClientSecret')]
        [ValidateNotNull()]
        [securestring] $ClientSecret,

        [Parameter(Mandatory, ParameterSetName = 'Credential')]
        [ValidateNotNull()]
        [pscredential] $Credential,

        [Parameter(Mandatory, ParameterSetName = 'CertificatePath')]
        [ValidateNotNullOrEmpty()]
        [string] $CertificatePath,

        [Parameter(Mandatory, ParameterSetName = 'CertificateThumbprint')]
        [ValidateNotNullOrEmpty()]
        [string] $CertificateThumbprint,

        [Parameter(Mandatory, ParameterSetName = 'Identity')]
        [switch] $Identity,

        [Parameter(Mandatory, ParameterSetName = 'AccessToken')]
        [ValidateNotNull()]
        [securestring] $AccessToken,

        [ValidateSet('Commercial', 'US', 'EU', 'UK', 'AU', 'SWA', 'INA', 'GCC', 'GCC-High', 'DoD')]
        [string] $Cloud = 'Commercial',

        [ValidateNotNullOrEmpty()]
        [uri] $BaseUri,

        [hashtable] $Option = @{}
    )

    # Options that a parameter sets, and the parameter to use instead.
    $setByParameter = @{
        tenant_id               = '-TenantId'
        client_id               = '-ClientId or -Credential'
        client_secret           = '-ClientSecret or -Credential'
        client_certificate_path = '-CertificatePath'
        client_assertion        = '-CertificateThumbprint'
        access_token            = '-AccessToken'
        managed_identity        = '-Identity'
        environment             = 'one of the sign-in parameters'
        cloud                   = '-Cloud'
        base_url                = '-BaseUri'
    }
    foreach ($key in $Option.Keys) {
        if ($setByParameter.ContainsKey([string]$key)) {
            $PSCmdlet.ThrowTerminatingError((New-DefenderErrorRecord -Reason InvalidArgument -Category InvalidArgument `
                        -Target $key -Message "-Option may not set '$key': use $($setByParameter[[string]$key])."))
        }
    }

    # Non-secret options as configured here: a command that changes one for a single call
    # (Save-DefenderInvestigationPackage -Force, -Wait) puts this value back afterwards.
    $options = @{ cloud = $Cloud.ToLowerInvariant() }
    if ($BaseUri) {
        $options.base_url = $BaseUri.OriginalString
    }
    foreach ($key in $Option.Keys) {
        $options[[string]$key] = ConvertTo-DefenderOptionValue $Option[$key]
    }

    $connection = [pscustomobject]@{
        Client      = $null
        Options     = $options
        SignIn      = $PSCmdlet.ParameterSetName
        Certificate = $null
        ClientId    = $ClientId
    }
    $client = [Defender.DefenderClient]::new()
    try {
        $connection.Client = $client
        foreach ($key in $options.Keys) {
            Set-DefenderClientOption -Client $client -Key $key -Value $options[$key]
        }
        switch ($PSCmdlet.ParameterSetName) {
            'ClientSecret' {
                $client.Set('tenant_id', $TenantId)
                $client.Set('client_id', $ClientId)
                $client.SetSecret('client_secret', $ClientSecret)
            }
            'Credential' {
                $connection.ClientId = $Credential.UserName
                $client.Set('tenant_id', $TenantId)
                $client.Set('client_id', $Credential.UserName)
                $client.SetSecret('client_secret', $Credential.Password)
            }
            'CertificatePath' {
                # The library resolves relative paths against the process's directory, not this session's location.
                $client.Set('tenant_id', $TenantId)
                $client.Set('client_id', $ClientId)
                $client.Set('client_certificate_path', $PSCmdlet.GetUnresolvedProviderPathFromPSPath($CertificatePath))
            }
            'CertificateThumbprint' {
                $connection.Certificate = Find-DefenderCertificate -Thumbprint $CertificateThumbprint -Command $PSCmdlet
                $client.Set('tenant_id', $TenantId)
                $client.Set('client_id', $ClientId)
                Set-DefenderClientAssertion -Connection $connection
            }
            'Identity' {
                $client.Set('managed_identity', $(if ($ClientId) { $ClientId } else { 'system' }))
            }
            'AccessToken' {
                $client.SetSecret('access_token', $AccessToken)
            }
        }
        # Wrong credentials fail here, not at the first command (a bearer token is not checked:
        # only the API can tell). The token is kept for the commands.
        $scope = [Defender.PowerShell.CommandScope]::new($client, $PSCmdlet)
        try {
            $scope.SignIn()
        } finally {
            $scope.Dispose()
        }
    } catch [Defender.DefenderException] {
        $client.Dispose()
        $PSCmdlet.ThrowTerminatingError([Defender.PowerShell.DefenderErrors]::ToErrorRecord(
                (Get-InnerDefenderException $_.Exception), $null))
    } catch {
        $client.Dispose()
        throw
    }

    Disconnect-DefenderApi
    $script:Connection = $connection
    $where = if ($BaseUri) { $BaseUri.OriginalString } else { "the $Cloud cloud" }
    Write-Verbose "Connected to the Defender for Endpoint API at $where (sign-in: $($PSCmdlet.ParameterSetName))."
}

