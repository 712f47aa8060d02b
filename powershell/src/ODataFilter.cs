// The $filter clauses the list cmdlets build from their parameters. Every value from the user
// goes through DefenderClient.ODataString (quoted, each quote doubled), as the command line does
// (cli/src/commands.rs), so that no value can change the filter.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;

namespace Defender.PowerShell
{
    /// <summary>Clauses joined with "and"; null when there is none.</summary>
    sealed class ODataFilter
    {
        readonly List<string> clauses = new List<string>();

        /// <summary>A clause as it is: a raw -Filter, kept whole in parentheses.</summary>
        internal void AddRaw(string clause)
        {
            if (!string.IsNullOrEmpty(clause)) clauses.Add("(" + clause + ")");
        }

        /// <summary><paramref name="property"/> eq 'value'; nothing for a null value.</summary>
        internal void AddEquals(string property, string value)
        {
            if (value != null) clauses.Add(property + " eq " + DefenderClient.ODataString(value));
        }

        /// <summary>creationDateTimeUtc ge 2024-05-01T08:00:00Z (the instant, in UTC).</summary>
        internal void AddSince(string property, DateTime? since)
        {
            if (!since.HasValue) return;
            DateTime utc = since.Value.Kind == DateTimeKind.Unspecified
                ? DateTime.SpecifyKind(since.Value, DateTimeKind.Local).ToUniversalTime()
                : since.Value.ToUniversalTime();
            clauses.Add(property + " ge " + utc.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));
        }

        /// <summary>A device with the tag.</summary>
        internal void AddTag(string tag)
        {
            if (tag != null) clauses.Add("machineTags/any(t: t eq " + DefenderClient.ODataString(tag) + ")");
        }

        /// <summary>
        /// A computer name, with PowerShell's wildcards (* ? [ ]). Without any, the name itself or,
        /// for a host name without a dot, its fully qualified names (name.*). With some, the part
        /// before the first wildcard goes to the service as startswith; the returned pattern (null
        /// when the service's answer is already exact, as for "ws-*") is matched here.
        /// </summary>
        internal WildcardPattern AddComputerName(string name)
        {
            if (name == null) return null;
            int wildcard = name.IndexOfAny(new[] { '*', '?', '[' });
            if (wildcard < 0)
            {
                string exact = "computerDnsName eq " + DefenderClient.ODataString(name);
                clauses.Add(name.IndexOf('.') >= 0 ? exact
                    : "(" + exact + " or startswith(computerDnsName, " + DefenderClient.ODataString(name + ".") + "))");
                return null;
            }
            string prefix = name.Substring(0, wildcard);
            if (prefix.Length > 0) clauses.Add("startswith(computerDnsName, " + DefenderClient.ODataString(prefix) + ")");
            bool onlyTrailingStar = name.Substring(wildcard) == "*";
            return onlyTrailingStar ? null : new WildcardPattern(name, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant);
        }

        /// <summary>The filter, or null for none (every item).</summary>
        internal string Build()
        {
            return clauses.Count == 0 ? null : string.Join(" and ", clauses.ToArray());
        }
    }
}
