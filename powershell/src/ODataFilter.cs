// The $filter clauses the list cmdlets build from their parameters, and the matching done here
// where OData cannot (wildcards, the group's name). Every value from the user goes through
// DefenderClient.ODataString (quoted, each quote doubled), as the command line does
// (cli/src/commands.rs), so that no value can change the filter.
//
// Several values of one parameter (-Tag A, B) select a device that has any of them; different
// parameters must all hold. The service's filter only narrows what is asked for: every value is
// also matched here, so that what is written is exactly what the parameters say.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Management.Automation;

namespace Defender.PowerShell
{
    /// <summary>Clauses joined with "and"; null when there is none.</summary>
    sealed class ODataFilter
    {
        const WildcardOptions Options = WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant;

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

        /// <summary><paramref name="property"/> equal to any of <paramref name="values"/> (null: no clause).</summary>
        internal void AddAnyEquals(string property, IList<string> values)
        {
            if (values == null || values.Count == 0) return;
            AddAny(values.Select(delegate(string value) { return property + " eq " + DefenderClient.ODataString(value); }).ToList());
        }

        // One clause, or several joined with "or" in parentheses.
        void AddAny(IList<string> alternatives)
        {
            clauses.Add(alternatives.Count == 1 ? alternatives[0] : "(" + string.Join(" or ", alternatives.ToArray()) + ")");
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

        /// <summary>
        /// Devices with any of <paramref name="tags"/>: sent to the service when none has a
        /// wildcard (machineTags/any(...) has no startswith); the patterns to match here, or null
        /// for no -Tag.
        /// </summary>
        internal IList<WildcardPattern> AddTags(IList<string> tags)
        {
            if (tags == null || tags.Count == 0) return null;
            if (!tags.Any(WildcardPattern.ContainsWildcardCharacters))
                AddAny(tags.Select(delegate(string tag) { return "machineTags/any(t: t eq " + DefenderClient.ODataString(tag) + ")"; }).ToList());
            return Patterns(tags);
        }

        /// <summary>
        /// Devices with any of the computer names <paramref name="names"/>, with PowerShell's
        /// wildcards (* ? [ ]). Without any, the name itself or, for a host name without a dot,
        /// its fully qualified names (name.*); a device id (40 hexadecimal characters) is that
        /// device (<paramref name="idGiven"/> is told). With some, the part before the first
        /// wildcard goes to the service as startswith. The service is asked only when every name
        /// gives it a clause (one starting with a wildcard gives none). Returns what to match
        /// here, or null for no -Name.
        /// </summary>
        internal IList<NameMatcher> AddComputerNames(IList<string> names, Action<string> idGiven)
        {
            if (names == null || names.Count == 0) return null;
            List<string> alternatives = new List<string>();
            List<NameMatcher> matchers = new List<NameMatcher>();
            foreach (string name in names)
            {
                int wildcard = name.IndexOfAny(new[] { '*', '?', '[' });
                if (wildcard < 0 && PipelineInput.IsMachineId(name))
                {
                    idGiven(name);
                    alternatives.Add("id eq " + DefenderClient.ODataString(name.ToLowerInvariant()));
                }
                else if (wildcard < 0)
                {
                    string exact = "computerDnsName eq " + DefenderClient.ODataString(name);
                    alternatives.Add(name.IndexOf('.') >= 0 ? exact
                        : "(" + exact + " or startswith(computerDnsName, " + DefenderClient.ODataString(name + ".") + "))");
                }
                else
                {
                    string prefix = name.Substring(0, wildcard);
                    alternatives.Add(prefix.Length > 0 ? "startswith(computerDnsName, " + DefenderClient.ODataString(prefix) + ")" : null);
                }
                matchers.Add(new NameMatcher(name));
            }
            if (!alternatives.Contains(null)) AddAny(alternatives);
            return matchers;
        }

        /// <summary>Patterns that match values whole, ignoring case (null for no values).</summary>
        internal static IList<WildcardPattern> Patterns(IList<string> values)
        {
            if (values == null || values.Count == 0) return null;
            return values.Select(delegate(string value) { return new WildcardPattern(value, Options); }).ToList();
        }

        /// <summary>Whether <paramref name="value"/> matches any of <paramref name="patterns"/> (no patterns: every value does).</summary>
        internal static bool AnyMatch(IList<WildcardPattern> patterns, string value)
        {
            return patterns == null || patterns.Any(delegate(WildcardPattern pattern) { return pattern.IsMatch(value ?? ""); });
        }

        /// <summary>The filter, or null for none (every item).</summary>
        internal string Build()
        {
            return clauses.Count == 0 ? null : string.Join(" and ", clauses.ToArray());
        }
    }

    /// <summary>One -Name as matched here: a computer name (or a host name), a pattern, or a device id.</summary>
    sealed class NameMatcher
    {
        readonly WildcardPattern pattern;

        internal NameMatcher(string given)
        {
            Given = given;
            if (!IsExact) pattern = new WildcardPattern(given, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant);
        }

        /// <summary>The -Name as given.</summary>
        internal string Given { get; private set; }

        internal bool IsExact
        {
            get { return !WildcardPattern.ContainsWildcardCharacters(Given); }
        }

        internal bool Matches(PSObject machine)
        {
            if (IsExact && PipelineInput.IsMachineId(Given))
                return string.Equals(DefenderTarget.Text(machine, "id"), Given, StringComparison.OrdinalIgnoreCase);
            string name = DefenderTarget.Text(machine, "computerDnsName") ?? "";
            if (!IsExact) return pattern.IsMatch(name);
            // A host name without a dot is the name itself or its fully qualified names.
            return string.Equals(name, Given, StringComparison.OrdinalIgnoreCase) ||
                (Given.IndexOf('.') < 0 && name.StartsWith(Given + ".", StringComparison.OrdinalIgnoreCase));
        }
    }
}
