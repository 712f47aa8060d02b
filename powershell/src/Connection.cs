// The session's connection: the DefenderClient that Connect-DefenderApi configured, one per
// runspace (as a script module's variable was), which every command clones for its own calls.

using System;
using System.Runtime.CompilerServices;
using System.Management.Automation.Runspaces;
using System.Security.Cryptography.X509Certificates;

namespace Defender.PowerShell
{
    sealed class DefenderConnection : IDisposable
    {
        internal DefenderConnection(DefenderClient client, X509Certificate2 certificate)
        {
            Client = client;
            Certificate = certificate;
        }

        /// <summary>Configured and signed in by Connect-DefenderApi; commands use clones of it.</summary>
        internal DefenderClient Client { get; private set; }

        /// <summary>The certificate from a store that signs client assertions (-CertificateThumbprint), or null.</summary>
        internal X509Certificate2 Certificate { get; private set; }

        public void Dispose()
        {
            Client.Dispose();
            if (Certificate != null) Certificate.Dispose();
        }

        // Keyed by runspace: each runspace (a console, a runbook job, a ForEach-Object -Parallel
        // runspace) has a connection of its own, dropped with the runspace.
        static readonly ConditionalWeakTable<Runspace, Holder> connections = new ConditionalWeakTable<Runspace, Holder>();

        sealed class Holder
        {
            internal DefenderConnection Connection;
        }

        static Holder Current
        {
            get
            {
                Runspace runspace = Runspace.DefaultRunspace;
                if (runspace == null) throw new InvalidOperationException("DefenderPackage commands run in a PowerShell runspace.");
                return connections.GetValue(runspace, delegate { return new Holder(); });
            }
        }

        /// <summary>This runspace's connection, or null when it is not connected.</summary>
        internal static DefenderConnection ForThisRunspace
        {
            get { return Current.Connection; }
        }

        /// <summary>Makes <paramref name="connection"/> this runspace's (null: none), freeing the one before.</summary>
        internal static void Replace(DefenderConnection connection)
        {
            Holder holder = Current;
            DefenderConnection previous = holder.Connection;
            holder.Connection = connection;
            if (previous != null) previous.Dispose();
        }
    }
}
