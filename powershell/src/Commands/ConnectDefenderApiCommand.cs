using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Security;
using System.Security.Cryptography.X509Certificates;

namespace Defender.PowerShell.Commands
{
    /// <summary>Connect-DefenderApi: the session's client and how it signs in (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommunications.Connect, "DefenderApi", DefaultParameterSetName = ClientSecretSet)]
    [OutputType(typeof(void))]
    public sealed class ConnectDefenderApiCommand : DefenderCmdlet
    {
        const string ClientSecretSet = "ClientSecret";
        const string CredentialSet = "Credential";
        const string CertificatePathSet = "CertificatePath";
        const string CertificateThumbprintSet = "CertificateThumbprint";
        const string IdentitySet = "Identity";
        const string AccessTokenSet = "AccessToken";

        // Client assertions signed with a certificate from a store live this long. The library
        // asks for a fresh one whenever it needs a token, so a long command renews its token.
        static readonly TimeSpan AssertionLifetime = TimeSpan.FromMinutes(10);

        // Options that a parameter sets, and the parameter to use instead.
        static readonly Dictionary<string, string> SetByParameter = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            { "tenant_id", "-TenantId" },
            { "client_id", "-ClientId or -Credential" },
            { "client_secret", "-ClientSecret or -Credential" },
            { "client_certificate_path", "-CertificatePath" },
            { "client_assertion", "-CertificateThumbprint" },
            { "access_token", "-AccessToken" },
            { "managed_identity", "-Identity" },
            { "managed_identity_header", "-Identity (it reads IDENTITY_HEADER)" },
            { "environment", "one of the sign-in parameters" },
            { "cloud", "-Cloud" },
            { "base_url", "-BaseUri" },
        };

        [Parameter(Mandatory = true, ParameterSetName = ClientSecretSet)]
        [Parameter(Mandatory = true, ParameterSetName = CredentialSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificatePathSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificateThumbprintSet)]
        [ValidateNotNullOrEmpty]
        public string TenantId { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = ClientSecretSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificatePathSet)]
        [Parameter(Mandatory = true, ParameterSetName = CertificateThumbprintSet)]
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

        [Parameter(Mandatory = true, ParameterSetName = IdentitySet)]
        public SwitchParameter Identity { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = AccessTokenSet)]
        [ValidateNotNull]
        public SecureString AccessToken { get; set; }

        [Parameter]
        [ValidateSet("Commercial", "US", "EU", "UK", "AU", "SWA", "INA", "GCC", "GCC-High", "DoD")]
        public string Cloud { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public Uri BaseUri { get; set; }

        [Parameter]
        [ArgumentCompleter(typeof(OptionKeyCompleter))]
        public Hashtable Option { get; set; }

        public ConnectDefenderApiCommand()
        {
            Cloud = "Commercial";
            Option = new Hashtable();
        }

        protected override void ProcessRecord()
        {
            IList<string> known = OptionKeys();
            foreach (object key in Option.Keys)
            {
                string name = Convert.ToString(key, CultureInfo.InvariantCulture);
                string parameter;
                if (SetByParameter.TryGetValue(name, out parameter))
                    ThrowTerminatingError(ModuleError("InvalidArgument", "-Option may not set '" + key + "': use " + parameter + ".",
                        ErrorCategory.InvalidArgument, key));
                if (!known.Contains(name))
                    ThrowTerminatingError(ModuleError("UnknownOption", "-Option has no key '" + key + "'; the keys are: " +
                        string.Join(", ", known.ToArray()) + ".", ErrorCategory.InvalidArgument, key));
            }

            X509Certificate2 certificate = null;
            if (ParameterSetName == CertificateThumbprintSet) certificate = FindCertificate(CertificateThumbprint);
            DefenderClient client = new DefenderClient();
            try
            {
                client.Set("cloud", Cloud.ToLowerInvariant());
                if (BaseUri != null) client.Set("base_url", BaseUri.OriginalString);
                foreach (DictionaryEntry option in Option)
                    client.Set(Convert.ToString(option.Key, CultureInfo.InvariantCulture), OptionValue(option.Value));
                ConfigureSignIn(client, certificate);
                // Wrong credentials fail here, not at the first command (a bearer token is not
                // checked: only the API can tell). The token is kept for the commands.
                Open(client).SignIn();
            }
            catch (DefenderException e)
            {
                client.Dispose();
                ThrowTerminatingError(DefenderErrors.ToErrorRecord(e, null));
            }
            catch
            {
                client.Dispose();
                if (certificate != null) certificate.Dispose();
                throw;
            }

            DefenderConnection.Replace(new DefenderConnection(client, certificate));
            WriteVerbose(string.Format(CultureInfo.InvariantCulture, "DefenderPackage: using the defender native library {0} from '{1}'.",
                DefenderLibrary.Version, DefenderLibrary.LoadedPath));
            string where = BaseUri != null ? BaseUri.OriginalString : "the " + Cloud + " cloud";
            WriteVerbose("Connected to the Defender for Endpoint API at " + where + " (sign-in: " + ParameterSetName + ").");
        }

        void ConfigureSignIn(DefenderClient client, X509Certificate2 certificate)
        {
            switch (ParameterSetName)
            {
                case ClientSecretSet:
                    SetApp(client, ClientId);
                    client.SetSecret("client_secret", ClientSecret);
                    break;
                case CredentialSet:
                    SetApp(client, Credential.UserName);
                    client.SetSecret("client_secret", Credential.Password);
                    break;
                case CertificatePathSet:
                    SetApp(client, ClientId);
                    // The library resolves relative paths against the process's directory, not this session's location.
                    client.Set("client_certificate_path", GetUnresolvedProviderPathFromPSPath(CertificatePath));
                    break;
                case CertificateThumbprintSet:
                    SetApp(client, ClientId);
                    // The key stays in the store: the library asks for each assertion it needs.
                    client.SetAssertionSigner(delegate(string audience, string clientId)
                    {
                        return ClientAssertion.Create(certificate, audience, clientId, AssertionLifetime);
                    });
                    break;
                case IdentitySet:
                    client.Set("managed_identity", string.IsNullOrEmpty(ClientId) ? "system" : ClientId);
                    break;
                case AccessTokenSet:
                    client.SetSecret("access_token", AccessToken);
                    break;
            }
        }

        void SetApp(DefenderClient client, string clientId)
        {
            client.Set("tenant_id", TenantId);
            client.Set("client_id", clientId);
        }

        // The keys -Option takes: the library's options, but for those a parameter sets.
        static IList<string> OptionKeys()
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

        // The certificate with the thumbprint from CurrentUser\My, else LocalMachine\My, with a private key.
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
                    if (found.Count == 0) continue;
                    X509Certificate2 certificate = found[0];
                    if (!certificate.HasPrivateKey)
                        ThrowTerminatingError(ModuleError("CertificateWithoutKey",
                            "The certificate " + wanted + " in " + location + "\\My has no private key that this process can use.",
                            ErrorCategory.InvalidArgument, wanted));
                    return certificate;
                }
                finally
                {
                    store.Dispose();
                }
            }
            ThrowTerminatingError(ModuleError("CertificateNotFound",
                "No certificate with thumbprint " + wanted + " in CurrentUser\\My or LocalMachine\\My.", ErrorCategory.ObjectNotFound, wanted));
            return null;
        }
    }
}
