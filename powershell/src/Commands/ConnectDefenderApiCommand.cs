using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Management.Automation.Runspaces;
using System.Security;
using System.Security.Cryptography.X509Certificates;

namespace Defender.PowerShell.Commands
{
    /// <summary>Connect-DefenderApi: a connection, the runspace's default (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommunications.Connect, "DefenderApi", DefaultParameterSetName = ClientSecretSet, HelpUri = Help.Base + "connect-defenderapi")]
    [OutputType(typeof(DefenderConnection))]
    public sealed class ConnectDefenderApiCommand : DefenderCmdlet
    {
        const string ClientSecretSet = "ClientSecret";
        const string CredentialSet = "Credential";
        const string CertificatePathSet = "CertificatePath";
        const string CertificateThumbprintSet = "CertificateThumbprint";
        const string CertificateSet = "Certificate";
        const string IdentitySet = "Identity";
        const string AccessTokenSet = "AccessToken";
        const string EnvironmentVariableSet = "EnvironmentVariable";

        // Client assertions signed with a certificate the module holds live this long. The library
        // asks for a fresh one whenever it needs a token, so a long command renews its token.
        static readonly TimeSpan AssertionLifetime = TimeSpan.FromMinutes(10);

        // Options that a parameter sets, and the parameter to use instead.
        static readonly Dictionary<string, string> SetByParameter = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            { "tenant_id", "-TenantId" },
            { "client_id", "-ClientId or -Credential" },
            { "client_secret", "-ClientSecret or -Credential" },
            { "client_certificate_path", "-CertificatePath" },
            { "client_assertion", "-CertificateThumbprint or -Certificate" },
            { "access_token", "-AccessToken" },
            { "managed_identity", "-Identity" },
            { "managed_identity_header", "-Identity (it reads IDENTITY_HEADER)" },
            { "environment", "-EnvironmentVariable" },
            { "cloud", "-Cloud" },
            { "base_url", "-BaseUri" },
        };

        // Azure Identity's variables, as Connect-MgGraph -EnvironmentVariable and the library read them.
        const string TenantVariable = "AZURE_TENANT_ID";
        const string ClientVariable = "AZURE_CLIENT_ID";
        const string SecretVariable = "AZURE_CLIENT_SECRET";
        const string CertificatePathVariable = "AZURE_CLIENT_CERTIFICATE_PATH";
        const string AuthorityVariable = "AZURE_AUTHORITY_HOST";
        // App Service's, Functions' and Automation's managed identity endpoint.
        const string IdentityEndpointVariable = "IDENTITY_ENDPOINT";
        const string IdentityHeaderVariable = "IDENTITY_HEADER";

        [Parameter(Mandatory = true, ParameterSetName = ClientSecretSet)]
        [Parameter(Mandatory = true, ParameterSetName = CredentialSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificatePathSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificateThumbprintSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificateSet)]
        [ValidateNotNullOrEmpty]
        public string TenantId { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = ClientSecretSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificatePathSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificateThumbprintSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificateSet)]
        [Parameter(ParameterSetName = IdentitySet)]
        [ValidateNotNullOrEmpty]
        public string ClientId { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = ClientSecretSet)]
        [ValidateNotNull]
        public SecureString ClientSecret { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = CredentialSet)]
        [ValidateNotNull]
        [Credential]
        public PSCredential Credential { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = CertificatePathSet)]
        [ValidateNotNullOrEmpty]
        public string CertificatePath { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = CertificateThumbprintSet)]
        [ValidateNotNullOrEmpty]
        public string CertificateThumbprint { get; set; }

        /// <summary>A certificate with its private key (Get-PfxCertificate, Get-Item Cert:\..., Get-AzKeyVaultCertificate's).</summary>
        [Parameter(Mandatory = true, ParameterSetName = CertificateSet)]
        [ValidateNotNull]
        public X509Certificate2 Certificate { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = IdentitySet)]
        public SwitchParameter Identity { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = AccessTokenSet)]
        [ValidateNotNull]
        public SecureString AccessToken { get; set; }

        /// <summary>The app from AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH, as Connect-MgGraph reads them.</summary>
        [Parameter(Mandatory = true, ParameterSetName = EnvironmentVariableSet)]
        public SwitchParameter EnvironmentVariable { get; set; }

        [Parameter]
        [ValidateSet("Commercial", "US", "EU", "UK", "AU", "SWA", "INA", "GCC", "GCC-High", "DoD")]
        public string Cloud { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public Uri BaseUri { get; set; }

        [Parameter]
        [ArgumentCompleter(typeof(OptionKeyCompleter))]
        public ConnectionOptions Option { get; set; }

        /// <summary>Returns the connection, for -Connection (several tenants in one session).</summary>
        [Parameter]
        public SwitchParameter PassThru { get; set; }

        public ConnectDefenderApiCommand()
        {
            Cloud = "Commercial";
            Option = new ConnectionOptions();
        }

        protected override void ProcessRecord()
        {
            Runspace runspace = Runspace.DefaultRunspace;
            // A connect that fails leaves no default behind: a command must never go to the
            // previous tenant while its user thinks this connect took.
            DefenderConnection previous = Connections.SetDefault(runspace, null);
            // One nobody holds is ended now rather than when the runspace closes (commands in
            // flight on it finish: they hold clones).
            if (previous != null && !previous.HandedOut) Connections.End(previous);
            DefenderConnection connection;
            try
            {
                connection = Connect(runspace);
            }
            catch (DefenderException e)
            {
                Refuse(e, previous, ErrorIdOf(e));
                return;
            }
            Connections.SetDefault(runspace, connection);
            WriteVerbose(string.Format(CultureInfo.InvariantCulture, "DefenderPackage: using the defender native library {0} from '{1}'.",
                DefenderLibrary.Version, DefenderLibrary.LoadedPath));
            string until = connection.TokenExpiresOn.HasValue
                ? "; its token is good until " + connection.TokenExpiresOn.Value.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture) + " UTC and renewed as needed"
                : "";
            string said = "Connected to the Defender for Endpoint API as " + connection + " (sign-in: " + connection.SignIn + until + ").";
            if (PassThru)
            {
                WriteVerbose(said);
                connection.HandedOut = true;
                WriteObject(connection);
            }
            else
            {
                // Shown as Write-Host shows it, so that "which tenant am I on?" is answered on screen
                // and in a runbook's output; -InformationAction Ignore hides it.
                WriteInformation(new HostInformationMessage { Message = said }, new[] { "PSHOST" });
            }
        }

        // The ErrorId of a failure: the module's own reason when it set one (Data["Reason"]).
        static string ErrorIdOf(DefenderException e)
        {
            return e.Data.Contains("Reason") ? (string)e.Data["Reason"] : null;
        }

        // A terminating error that says the session is not connected now, and which connection it ended.
        void Refuse(DefenderException e, DefenderConnection previous, string reason)
        {
            string after = previous == null
                ? " Not connected."
                : " Not connected: commands no longer use the previous connection (" + previous + ").";
            DefenderException said = new DefenderException(e.Status, e.Message.TrimEnd() + after);
            ErrorRecord record = reason == null
                ? DefenderErrors.ToErrorRecord(said, null)
                : DefenderErrors.ModuleError(reason, e.Status, said.Message, DefenderErrors.CategoryOf(e.Status), null, null);
            string fix = e.Status == DefenderStatus.Unauthorized || e.Status == DefenderStatus.InvalidArgument || e.Status == DefenderStatus.UnknownOption
                ? "Fix what the message says and run Connect-DefenderApi again" + (previous == null ? "." : ", or pass the previous connection with -Connection if you still hold it.")
                : "Run Connect-DefenderApi again once the cause is fixed.";
            if (record.ErrorDetails == null || record.ErrorDetails.RecommendedAction == null)
                record.ErrorDetails = new ErrorDetails(said.Message) { RecommendedAction = fix };
            ThrowTerminatingError(record);
        }

        static DefenderException Failure(string reason, DefenderStatus status, string message)
        {
            DefenderException failure = new DefenderException(status, message);
            failure.Data["Reason"] = reason;
            return failure;
        }

        // Builds, signs in and returns the connection; a DefenderException says why not.
        DefenderConnection Connect(Runspace runspace)
        {
            IList<string> known = OptionKeys();
            foreach (string name in Option.Keys)
            {
                string parameter;
                if (SetByParameter.TryGetValue(name, out parameter))
                    throw Failure("InvalidArgument", DefenderStatus.InvalidArgument, "-Option may not set '" + name + "': use " + parameter + ".");
                if (!known.Contains(name))
                    throw Failure("UnknownOption", DefenderStatus.UnknownOption, "-Option has no key '" + name + "'; the keys are: " +
                        string.Join(", ", known.ToArray()) + ".");
            }

            X509Certificate2 owned = ParameterSetName == CertificateThumbprintSet ? FindCertificate(CertificateThumbprint) : null;
            X509Certificate2 signer = owned ?? Certificate;
            if (signer != null && !signer.HasPrivateKey)
                throw Failure("CertificateWithoutKey", DefenderStatus.InvalidArgument,
                    "The certificate " + signer.Thumbprint + " (" + signer.Subject + ") has no private key that this process can use.");
            DefenderClient client = new DefenderClient();
            try
            {
                client.Set("cloud", Cloud.ToLowerInvariant());
                if (BaseUri != null) client.Set("base_url", BaseUri.OriginalString);
                foreach (string key in Option.Keys) client.Set(key, OptionValue(Option[key]));
                string signIn = ConfigureSignIn(client, signer);
                DefenderConnection connection = new DefenderConnection(client, owned, signIn, Cloud, runspace.InstanceId);
                // Wrong credentials fail here, not at the first command (a bearer token is not
                // checked: only the API can tell). The token is kept for the commands.
                Open(client).SignIn(connection);
                return connection;
            }
            catch
            {
                client.Dispose();
                if (owned != null) owned.Dispose();
                throw;
            }
        }

        // Configures the sign-in; returns how it signs in, as Get-DefenderConnection shows it.
        string ConfigureSignIn(DefenderClient client, X509Certificate2 signer)
        {
            switch (ParameterSetName)
            {
                case ClientSecretSet:
                    SetApp(client, TenantId, ClientId);
                    client.SetSecret("client_secret", ClientSecret);
                    break;
                case CredentialSet:
                    SetApp(client, TenantId, Credential.UserName);
                    client.SetSecret("client_secret", Credential.Password);
                    break;
                case CertificatePathSet:
                    SetApp(client, TenantId, ClientId);
                    // The library resolves relative paths against the process's directory, not this session's location.
                    client.Set("client_certificate_path", GetUnresolvedProviderPathFromPSPath(CertificatePath));
                    break;
                case CertificateThumbprintSet:
                case CertificateSet:
                    SetApp(client, TenantId, ClientId);
                    // The key stays where it is: the library asks for each assertion it needs.
                    client.SetAssertionSigner(delegate(string audience, string clientId)
                    {
                        return ClientAssertion.Create(signer, audience, clientId, AssertionLifetime);
                    });
                    break;
                case IdentitySet:
                    client.Set("managed_identity", string.IsNullOrEmpty(ClientId) ? "system" : ClientId);
                    // App Service, Functions and Automation give the endpoint in two variables.
                    // .NET's environment (where $env: sets them) is not the process's on Linux and
                    // macOS, which is all the library could read: they are handed over.
                    string endpoint = Environment.GetEnvironmentVariable(IdentityEndpointVariable);
                    string header = Environment.GetEnvironmentVariable(IdentityHeaderVariable);
                    if (!string.IsNullOrWhiteSpace(endpoint) && !string.IsNullOrWhiteSpace(header) && Option["managed_identity_endpoint"] == null)
                    {
                        client.Set("managed_identity_endpoint", endpoint.Trim());
                        using (SecureString secret = Secure(header)) client.SetSecret("managed_identity_header", secret);
                    }
                    return "ManagedIdentity";
                case AccessTokenSet:
                    client.SetSecret("access_token", AccessToken);
                    break;
                case EnvironmentVariableSet:
                    return "EnvironmentVariable (" + ConfigureFromEnvironment(client) + ")";
            }
            return ParameterSetName;
        }

        // The app Azure Identity's variables describe, read from this session ($env:), as the
        // library's option environment would read them from the process: a secret wins over a
        // certificate, AZURE_AUTHORITY_HOST is the sign-in host unless -Option sets one. Returns
        // which it found: ClientSecret or CertificatePath.
        string ConfigureFromEnvironment(DefenderClient client)
        {
            Func<string, string> variable = delegate(string name)
            {
                string value = Environment.GetEnvironmentVariable(name);
                return string.IsNullOrWhiteSpace(value) ? null : value.Trim();
            };
            string tenant = variable(TenantVariable), app = variable(ClientVariable);
            string secret = Environment.GetEnvironmentVariable(SecretVariable), certificate = variable(CertificatePathVariable);
            List<string> missing = new List<string>();
            if (tenant == null) missing.Add(TenantVariable);
            if (app == null) missing.Add(ClientVariable);
            if (string.IsNullOrEmpty(secret) && certificate == null) missing.Add(SecretVariable + " or " + CertificatePathVariable);
            if (missing.Count > 0)
                throw Failure("InvalidArgument", DefenderStatus.InvalidArgument, "-EnvironmentVariable needs " + TenantVariable + ", " + ClientVariable +
                    ", and " + SecretVariable + " or " + CertificatePathVariable + " in the environment ($env:" + TenantVariable + " = ...); not set: " +
                    string.Join(", ", missing.ToArray()) + ".");
            SetApp(client, tenant, app);
            if (!string.IsNullOrEmpty(secret))
            {
                using (SecureString secure = Secure(secret)) client.SetSecret("client_secret", secure);
            }
            else
            {
                client.Set("client_certificate_path", GetUnresolvedProviderPathFromPSPath(certificate));
            }
            string authority = variable(AuthorityVariable);
            if (authority != null && Option["authority_url"] == null)
                client.Set("authority_url", authority.Contains("://") ? authority : "https://" + authority);
            return string.IsNullOrEmpty(secret) ? "CertificatePath" : "ClientSecret";
        }

        static SecureString Secure(string text)
        {
            SecureString secure = new SecureString();
            foreach (char c in text) secure.AppendChar(c);
            secure.MakeReadOnly();
            return secure;
        }

        static void SetApp(DefenderClient client, string tenantId, string clientId)
        {
            client.Set("tenant_id", tenantId);
            client.Set("client_id", clientId);
        }

        /// <summary>The keys -Option takes: the library's options, but for those a parameter sets.</summary>
        public static IList<string> OptionKeys()
        {
            return DefenderClient.OptionNames.Where(delegate(string key) { return !SetByParameter.ContainsKey(key); }).ToList();
        }

        /// <summary>Completes -Option's keys (-Option ti[Tab]: @{ timeout_ms = ), each with its description.</summary>
        public sealed class OptionKeyCompleter : IArgumentCompleter
        {
            public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
                CommandAst commandAst, IDictionary fakeBoundParameters)
            {
                string typed = (wordToComplete ?? "").TrimStart('@', '{', ' ');
                List<CompletionResult> results = new List<CompletionResult>();
                foreach (string key in OptionKeys())
                {
                    if (!key.StartsWith(typed, StringComparison.OrdinalIgnoreCase)) continue;
                    results.Add(new CompletionResult("@{ " + key + " = ", key, CompletionResultType.ParameterValue,
                        DefenderClient.OptionDescription(key)));
                }
                return results;
            }
        }

        // An -Option value as the library takes it: text, booleans as 'true'/'false', numbers
        // without the session's culture, null for the default.
        static string OptionValue(object value)
        {
            object unwrapped = value is PSObject ? ((PSObject)value).BaseObject : value;
            if (unwrapped == null) return null;
            if (unwrapped is bool) return (bool)unwrapped ? "true" : "false";
            if (unwrapped is SwitchParameter) return ((SwitchParameter)unwrapped).IsPresent ? "true" : "false";
            return Convert.ToString(unwrapped, CultureInfo.InvariantCulture);
        }

        // The certificate with the thumbprint from CurrentUser\My, else LocalMachine\My.
        X509Certificate2 FindCertificate(string thumbprint)
        {
            string wanted = thumbprint.Replace(" ", "").Replace(":", "").Replace("\t", "").ToUpperInvariant();
            foreach (StoreLocation location in new[] { StoreLocation.CurrentUser, StoreLocation.LocalMachine })
            {
                X509Store store = new X509Store(StoreName.My, location);
                try
                {
                    try
                    {
                        store.Open(OpenFlags.ReadOnly | OpenFlags.OpenExistingOnly);
                    }
                    catch (Exception)
                    {
                        // LocalMachine\My does not exist on every system (Linux, macOS).
                        continue;
                    }
                    X509Certificate2Collection found = store.Certificates.Find(X509FindType.FindByThumbprint, wanted, false);
                    if (found.Count > 0) return found[0];
                }
                finally
                {
                    store.Dispose();
                }
            }
            throw Failure("CertificateNotFound", DefenderStatus.NotFound,
                "No certificate with thumbprint " + wanted + " in CurrentUser\\My or LocalMachine\\My.");
        }
    }
}
