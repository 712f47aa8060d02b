// Tab completion of values that come from the tenant: Get-DefenderMachine's -Tag, -GroupName and
// -OsPlatform offer what the tenant's devices carry, listed once per connection and kept for a
// few minutes, so that a second Tab costs no request. A completion never fails: without a
// connection, or when the list fails, it offers what it knows (the platforms Defender reports)
// or nothing.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Management.Automation.Runspaces;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Defender.PowerShell
{
    static class Completion
    {
        /// <summary>
        /// The values that start with (or match, with wildcards) what was typed, ignoring case,
        /// quoted when they need it, each described as <paramref name="what"/>.
        /// </summary>
        internal static IEnumerable<CompletionResult> Matching(IEnumerable<string> values, string wordToComplete, string what)
        {
            string typed = (wordToComplete ?? "").Trim('\'', '"');
            WildcardPattern pattern = new WildcardPattern(typed + "*", WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant);
            foreach (string value in values)
            {
                if (!pattern.IsMatch(value)) continue;
                bool plain = value.All(delegate(char c) { return char.IsLetterOrDigit(c) || c == '-' || c == '_' || c == '.'; });
                string text = plain ? value : "'" + value.Replace("'", "''") + "'";
                yield return new CompletionResult(text, value, CompletionResultType.ParameterValue, what + ": " + value);
            }
        }
    }

    /// <summary>
    /// Completes -Tag, -GroupName and -OsPlatform from the devices of the tenant the command would
    /// use (its -Connection when given as a variable, else the runspace's), listed once every few
    /// minutes per connection.
    /// </summary>
    public sealed class TenantValueCompleter : IArgumentCompleter
    {
        // What Defender reports as osPlatform, offered also before the tenant has answered.
        static readonly string[] KnownPlatforms =
        {
            "Windows11", "Windows10", "WindowsServer2025", "WindowsServer2022", "WindowsServer2019", "WindowsServer2016",
            "WindowsServer2012R2", "Linux", "macOS", "iOS", "Android",
        };

        static readonly TimeSpan KeptFor = TimeSpan.FromMinutes(10);
        static readonly TimeSpan ListFor = TimeSpan.FromSeconds(20);
        static readonly ConditionalWeakTable<DefenderConnection, TenantValues> cache = new ConditionalWeakTable<DefenderConnection, TenantValues>();

        sealed class TenantValues
        {
            internal DateTime ListedAt;
            internal string[] Tags = new string[0];
            internal string[] Groups = new string[0];
            internal string[] Platforms = new string[0];
        }

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            TenantValues values = Values(ConnectionOf(fakeBoundParameters));
            switch (parameterName)
            {
                case "Tag":
                    return Completion.Matching(values == null ? new string[0] : values.Tags, wordToComplete, "tag");
                case "GroupName":
                    return Completion.Matching(values == null ? new string[0] : values.Groups, wordToComplete, "device group");
                default:
                    IEnumerable<string> platforms = values == null ? KnownPlatforms : values.Platforms.Concat(KnownPlatforms).Distinct(StringComparer.OrdinalIgnoreCase);
                    return Completion.Matching(platforms, wordToComplete, "OS platform");
            }
        }

        /// <summary>The connection the command being completed would use: its -Connection given as a variable, else the runspace's.</summary>
        internal static DefenderConnection ConnectionOf(IDictionary fakeBoundParameters)
        {
            object given = fakeBoundParameters == null ? null : fakeBoundParameters["Connection"];
            DefenderConnection connection = (given is PSObject ? ((PSObject)given).BaseObject : given) as DefenderConnection;
            if (connection != null) return connection;
            Runspace runspace = Runspace.DefaultRunspace;
            bool borrowed;
            int others;
            return runspace == null ? null : Connections.Find(runspace, out borrowed, out others);
        }

        // The tenant's values, listed now when they are older than KeptFor; null without a connection or an answer.
        static TenantValues Values(DefenderConnection connection)
        {
            if (connection == null || !connection.IsConnected) return null;
            TenantValues kept;
            if (cache.TryGetValue(connection, out kept) && DateTime.UtcNow - kept.ListedAt < KeptFor) return kept;
            try
            {
                TenantValues listed = new TenantValues { ListedAt = DateTime.UtcNow };
                using (DefenderClient client = connection.Client.Clone())
                using (CancellationTokenSource limit = new CancellationTokenSource(ListFor))
                {
                    IList<Machine> machines = client.ListMachines(null, 0, limit.Token);
                    listed.Tags = Distinct(machines.SelectMany(delegate(Machine machine) { return machine.MachineTags; }));
                    listed.Groups = Distinct(machines.Select(delegate(Machine machine) { return machine.RbacGroupName; }));
                    listed.Platforms = Distinct(machines.Select(delegate(Machine machine) { return machine.OsPlatform; }));
                }
                cache.Remove(connection);
                cache.Add(connection, listed);
                return listed;
            }
            catch (Exception e) when (e is DefenderException || e is OperationCanceledException)
            {
                // Completion offers nothing rather than failing.
                return null;
            }
        }

        static string[] Distinct(IEnumerable<string> values)
        {
            return values.Where(delegate(string value) { return !string.IsNullOrEmpty(value); })
                .Distinct(StringComparer.OrdinalIgnoreCase)
                .OrderBy(delegate(string value) { return value; }, StringComparer.OrdinalIgnoreCase)
                .ToArray();
        }
    }

    /// <summary>
    /// Completes a live response library file's name (-ScriptName, -FileName) from the library of
    /// the tenant the command would use, listed at most once a minute per connection.
    /// </summary>
    public sealed class LibraryFileCompleter : IArgumentCompleter
    {
        static readonly TimeSpan KeptFor = TimeSpan.FromMinutes(1);
        static readonly TimeSpan ListFor = TimeSpan.FromSeconds(20);
        static readonly ConditionalWeakTable<DefenderConnection, Listed> cache = new ConditionalWeakTable<DefenderConnection, Listed>();

        sealed class Listed
        {
            internal DateTime ListedAt;
            internal string[] Names = new string[0];
        }

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            DefenderConnection connection = TenantValueCompleter.ConnectionOf(fakeBoundParameters);
            if (connection == null || !connection.IsConnected) return new CompletionResult[0];
            Listed kept;
            if (!cache.TryGetValue(connection, out kept) || DateTime.UtcNow - kept.ListedAt >= KeptFor)
            {
                try
                {
                    using (DefenderClient client = connection.Client.Clone())
                    using (CancellationTokenSource limit = new CancellationTokenSource(ListFor))
                    {
                        kept = new Listed
                        {
                            ListedAt = DateTime.UtcNow,
                            Names = client.GetLibraryFiles(limit.Token).Select(delegate(LibraryFile file) { return file.FileName; })
                                .Where(delegate(string name) { return !string.IsNullOrEmpty(name); })
                                .OrderBy(delegate(string name) { return name; }, StringComparer.OrdinalIgnoreCase).ToArray(),
                        };
                    }
                    cache.Remove(connection);
                    cache.Add(connection, kept);
                }
                catch (Exception e) when (e is DefenderException || e is OperationCanceledException)
                {
                    // Completion offers nothing rather than failing.
                    return new CompletionResult[0];
                }
            }
            return Completion.Matching(kept.Names, wordToComplete, "live response library file");
        }
    }
}
