// Connections to the Defender for Endpoint API, as Microsoft Graph's and Az's modules keep them:
//
// - Connect-DefenderApi makes a DefenderConnection, the default of the runspace it runs in, and
//   with -PassThru also returns it; every command takes one with -Connection, so one runspace
//   can work several tenants (an MSSP), and a connection can be handed to other runspaces
//   ($using:connection).
// - A runspace that never connected (ForEach-Object -Parallel, Start-ThreadJob) uses the one
//   default of this process's runspaces when there is exactly one; with several it refuses and
//   says to pass -Connection, so that a command never goes to a tenant it was not meant for.
// - A connect that fails leaves the runspace without a default (Connect-DefenderApi says so),
//   Disconnect-DefenderApi ends one, Remove-Module ends those its runspace opened, and a runspace
//   that closes ends its own.
//
// The connection holds the configured, signed-in DefenderClient; commands use clones of it.
// Commands of other modules that follow these conventions (Live Response) take it the same way:
// derive from DefenderApiCmdlet.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Management.Automation.Runspaces;
using System.Security.Cryptography.X509Certificates;

namespace Defender.PowerShell
{
    /// <summary>
    /// A connection to the Defender for Endpoint API (DefenderPackage.Connection): which tenant,
    /// app and cloud, how it signs in, and until when its token is good. Returned by
    /// Connect-DefenderApi -PassThru and Get-DefenderConnection; every command takes it with
    /// -Connection. It holds no secret.
    /// </summary>
    public sealed class DefenderConnection : IDisposable
    {
        readonly object gate = new object();
        readonly X509Certificate2 ownedCertificate;
        DefenderClient client;

        /// <param name="signIn">How Connect-DefenderApi was told to sign in (its parameter set, in words).</param>
        internal DefenderConnection(DefenderClient client, X509Certificate2 ownedCertificate, string signIn, string cloud, Guid openedIn)
        {
            this.client = client;
            this.ownedCertificate = ownedCertificate;
            SignIn = signIn;
            Cloud = cloud;
            OpenedIn = openedIn;
            ConnectedOn = DateTime.UtcNow;
        }

        /// <summary>The Entra tenant (id or domain) the app signs in to; null for a managed identity or a bearer token.</summary>
        public string TenantId { get; private set; }

        /// <summary>The app's client id, or a user-assigned managed identity's; null for the system-assigned identity or a bearer token.</summary>
        public string ClientId { get; private set; }

        /// <summary>
        /// How it signs in: ClientSecret, Credential, CertificatePath, CertificateThumbprint,
        /// Certificate, ManagedIdentity, AccessToken, or Environment (with the kind it found).
        /// </summary>
        public string SignIn { get; private set; }

        /// <summary>Commercial, GCC-High, ...: the cloud whose hosts it uses (unless ApiRoot says otherwise).</summary>
        public string Cloud { get; private set; }

        /// <summary>The API root its requests go to.</summary>
        public Uri ApiRoot { get; private set; }

        /// <summary>When Connect-DefenderApi made it (UTC).</summary>
        public DateTime ConnectedOn { get; private set; }

        /// <summary>
        /// When its token expires (UTC), as last seen (Connect-DefenderApi, Get-DefenderConnection);
        /// the token is renewed by itself before then. Null for a bearer token (-AccessToken).
        /// </summary>
        public DateTime? TokenExpiresOn { get; private set; }

        /// <summary>False once Disconnect-DefenderApi (or Remove-Module) has ended it.</summary>
        public bool IsConnected
        {
            get { lock (gate) return client != null; }
        }

        /// <summary>Whether it is this runspace's default connection (the one commands use without -Connection).</summary>
        public bool IsDefault
        {
            get
            {
                Runspace runspace = Runspace.DefaultRunspace;
                return runspace != null && Connections.DefaultOf(runspace) == this;
            }
        }

        /// <summary>The runspace that opened it (Remove-Module there ends it).</summary>
        internal Guid OpenedIn { get; private set; }

        /// <summary>
        /// Whether the user holds it (Connect-DefenderApi -PassThru, Get-DefenderConnection): one
        /// that was only ever a default is ended when another connect replaces it.
        /// </summary>
        internal bool HandedOut { get; set; }

        /// <summary>What it is, in one line: "app 1234... in tenant contoso.onmicrosoft.com at https://api...".</summary>
        public override string ToString()
        {
            string who;
            if (SignIn == "AccessToken") who = "a bearer token";
            else if (SignIn == "ManagedIdentity") who = ClientId == null ? "the system-assigned managed identity" : "managed identity " + ClientId;
            else who = "app " + ClientId + " in tenant " + TenantId;
            return who + " at " + ApiRoot + (IsConnected ? "" : " (disconnected)");
        }

        /// <summary>
        /// The client, for a command to clone; a terminating failure (thrown by the caller) when
        /// the connection was ended.
        /// </summary>
        internal DefenderClient Client
        {
            get
            {
                lock (gate)
                {
                    if (client == null)
                        throw new DefenderException(DefenderStatus.InvalidArgument,
                            "The connection to " + ToString() + " was ended by Disconnect-DefenderApi: run Connect-DefenderApi again.");
                    return client;
                }
            }
        }

        /// <summary>What the library says the connection is (tenant, app, API root, token expiry), as it is now.</summary>
        internal void Refresh(ConnectionInfo info)
        {
            TenantId = info.TenantId;
            ClientId = info.ClientId;
            Uri root;
            ApiRoot = Uri.TryCreate(info.ApiRoot, UriKind.Absolute, out root) ? root : null;
            TokenExpiresOn = info.TokenExpiresAt;
        }

        /// <summary>Ends it: commands that use it afterwards fail; clones in use finish their call.</summary>
        public void Dispose()
        {
            DefenderClient ended;
            lock (gate)
            {
                ended = client;
                client = null;
            }
            if (ended == null) return;
            ended.Dispose();
            if (ownedCertificate != null) ownedCertificate.Dispose();
        }

        internal static string Describe(DefenderConnection connection)
        {
            return connection == null ? "none" : connection.ToString();
        }
    }

    /// <summary>
    /// The default connection of each runspace, and the connections each runspace opened. Keyed by
    /// the runspace's InstanceId; a runspace's entries go when it closes.
    /// </summary>
    static class Connections
    {
        static readonly object gate = new object();
        static readonly Dictionary<Guid, RunspaceConnections> byRunspace = new Dictionary<Guid, RunspaceConnections>();

        sealed class RunspaceConnections
        {
            internal WeakReference<Runspace> Runspace;
            internal DefenderConnection Default;
            internal readonly List<DefenderConnection> Opened = new List<DefenderConnection>();
        }

        /// <summary>The runspace's own default connection, or null.</summary>
        internal static DefenderConnection DefaultOf(Runspace runspace)
        {
            lock (gate)
            {
                RunspaceConnections entry;
                return byRunspace.TryGetValue(runspace.InstanceId, out entry) ? entry.Default : null;
            }
        }

        /// <summary>
        /// The connection a command in <paramref name="runspace"/> uses without -Connection: the
        /// runspace's default, else the one default of this process's other open runspaces (with
        /// <paramref name="borrowed"/> true). Null when there is none, or several
        /// (<paramref name="others"/> counts them).
        /// </summary>
        internal static DefenderConnection Find(Runspace runspace, out bool borrowed, out int others)
        {
            borrowed = false;
            others = 0;
            lock (gate)
            {
                RunspaceConnections own;
                if (byRunspace.TryGetValue(runspace.InstanceId, out own) && own.Default != null) return own.Default;
                List<DefenderConnection> defaults = byRunspace.Values
                    .Where(delegate(RunspaceConnections entry) { return entry.Default != null && entry.Default.IsConnected && IsOpen(entry.Runspace); })
                    .Select(delegate(RunspaceConnections entry) { return entry.Default; })
                    .Distinct()
                    .ToList();
                others = defaults.Count;
                if (defaults.Count != 1) return null;
                borrowed = true;
                return defaults[0];
            }
        }

        static bool IsOpen(WeakReference<Runspace> reference)
        {
            Runspace runspace;
            return reference.TryGetTarget(out runspace) && runspace.RunspaceStateInfo.State == RunspaceState.Opened;
        }

        /// <summary>Makes <paramref name="connection"/> (null: none) the runspace's default; returns the one it replaces.</summary>
        internal static DefenderConnection SetDefault(Runspace runspace, DefenderConnection connection)
        {
            lock (gate)
            {
                RunspaceConnections entry = EntryOf(runspace);
                DefenderConnection previous = entry.Default;
                entry.Default = connection;
                if (connection != null && connection.OpenedIn == runspace.InstanceId && !entry.Opened.Contains(connection))
                    entry.Opened.Add(connection);
                return previous;
            }
        }

        /// <summary>Ends <paramref name="connection"/>; a runspace whose default it was has none any more.</summary>
        internal static void End(DefenderConnection connection)
        {
            lock (gate)
            {
                foreach (RunspaceConnections entry in byRunspace.Values)
                {
                    if (entry.Default == connection) entry.Default = null;
                    entry.Opened.Remove(connection);
                }
            }
            connection.Dispose();
        }

        /// <summary>Ends every connection <paramref name="runspace"/> opened (Remove-Module), and its default.</summary>
        internal static int EndAllOf(Runspace runspace)
        {
            List<DefenderConnection> ended;
            lock (gate)
            {
                RunspaceConnections entry;
                if (!byRunspace.TryGetValue(runspace.InstanceId, out entry)) return 0;
                ended = new List<DefenderConnection>(entry.Opened);
                if (entry.Default != null && !ended.Contains(entry.Default)) ended.Add(entry.Default);
                entry.Opened.Clear();
                entry.Default = null;
            }
            foreach (DefenderConnection connection in ended) End(connection);
            return ended.Count;
        }

        // The runspace's entry, made at its first connection, with a handler that ends its
        // connections when it closes (a runspace of ForEach-Object -Parallel, a runbook job).
        static RunspaceConnections EntryOf(Runspace runspace)
        {
            RunspaceConnections entry;
            if (byRunspace.TryGetValue(runspace.InstanceId, out entry)) return entry;
            entry = new RunspaceConnections { Runspace = new WeakReference<Runspace>(runspace) };
            byRunspace.Add(runspace.InstanceId, entry);
            Guid id = runspace.InstanceId;
            runspace.StateChanged += delegate(object sender, RunspaceStateEventArgs change)
            {
                RunspaceState state = change.RunspaceStateInfo.State;
                if (state != RunspaceState.Closed && state != RunspaceState.Broken) return;
                RunspaceConnections closed;
                lock (gate)
                {
                    if (!byRunspace.TryGetValue(id, out closed)) return;
                    byRunspace.Remove(id);
                }
                foreach (DefenderConnection connection in closed.Opened) connection.Dispose();
            };
            return entry;
        }

        /// <summary>"2 connections" for messages.</summary>
        internal static string Count(int count)
        {
            return count.ToString(CultureInfo.InvariantCulture) + (count == 1 ? " connection" : " connections");
        }
    }
}
