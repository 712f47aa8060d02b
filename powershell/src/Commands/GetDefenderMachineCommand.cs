using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderMachine (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderMachine", DefaultParameterSetName = QuerySet, HelpUri = Help.Base + "get-defendermachine")]
    [OutputType("DefenderPackage.Machine")]
    public sealed class GetDefenderMachineCommand : DefenderApiCmdlet
    {
        const string QuerySet = "Query";
        const string IdSet = "Id";
        const string InputObjectSet = "InputObject";

        /// <summary>Device ids (40 hexadecimal characters) or computer names, each looked up on its own.</summary>
        [Parameter(Mandatory = true, ParameterSetName = IdSet)]
        [Alias("MachineId")]
        [ValidateNotNullOrEmpty]
        public string[] Id { get; set; }

        /// <summary>Devices again, or the device of each machine action, package or link, from the pipeline.</summary>
        [Parameter(Mandatory = true, ParameterSetName = InputObjectSet, ValueFromPipeline = true)]
        [ValidateNotNull]
        public PSObject[] InputObject { get; set; }

        [Parameter(Position = 0, ParameterSetName = QuerySet)]
        [Alias("ComputerName", "ComputerDnsName")]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        public string[] Name { get; set; }

        [Parameter(ParameterSetName = QuerySet)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(TenantValueCompleter))]
        public string[] Tag { get; set; }

        /// <summary>The device group's name: matched here, as the service cannot filter on it.</summary>
        [Parameter(ParameterSetName = QuerySet)]
        [Alias("RbacGroupName")]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(TenantValueCompleter))]
        public string[] GroupName { get; set; }

        [Parameter(ParameterSetName = QuerySet)]
        [ValidateSet("Active", "Inactive", "ImpairedCommunication", "NoSensorData", "NoSensorDataImpairedCommunication", "Unknown",
            IgnoreCase = true)]
        public string[] HealthStatus { get; set; }

        [Parameter(ParameterSetName = QuerySet)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(TenantValueCompleter))]
        public string[] OsPlatform { get; set; }

        /// <summary>An OData $filter passed to the service as it is (joined with "and" to the others).</summary>
        [Parameter(ParameterSetName = QuerySet)]
        [ValidateNotNullOrEmpty]
        public string Filter { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == QuerySet)
            {
                Query();
                return;
            }
            object[] inputs = ParameterSetName == IdSet ? Id : (object[])InputObject;
            foreach (object input in inputs)
            {
                DefenderTarget target = Classify(input, InputKind.Device);
                if (target == null) continue;
                // A machine action (package, link) stands for its device.
                DefenderTarget device = target.IsAction ? Scope.DeviceOf(target) : target;
                if (device == null) continue;
                PSObject machine = Scope.GetMachine(device);
                if (machine != null) WriteObject(machine);
            }
        }

        void Query()
        {
            ODataFilter filter = new ODataFilter();
            IList<NameMatcher> names = filter.AddComputerNames(Name, delegate(string id)
            {
                WriteVerbose("-Name '" + id + "' is a device id (40 hexadecimal characters): looked up as one.");
            });
            IList<WildcardPattern> tags = filter.AddTags(Tag);
            filter.AddAnyEquals("healthStatus", HealthStatus);
            filter.AddAnyEquals("osPlatform", OsPlatform);
            filter.AddRaw(Filter);
            IList<WildcardPattern> groups = ODataFilter.Patterns(GroupName);
            IList<PSObject> machines = Scope.ListMachines(filter.Build());
            if (machines == null) return;
            List<PSObject> written = new List<PSObject>();
            foreach (PSObject machine in machines)
            {
                if (names != null && !names.Any(delegate(NameMatcher name) { return name.Matches(machine); })) continue;
                if (!ODataFilter.AnyMatch(groups, DefenderTarget.Text(machine, "rbacGroupName"))) continue;
                if (tags != null && !Tags(machine).Any(delegate(string tag) { return ODataFilter.AnyMatch(tags, tag); })) continue;
                WriteObject(machine);
                written.Add(machine);
            }
            // A device asked for by its exact name (or id) that is not there is an error of its
            // own; a selection that found nothing says so.
            bool exactNames = false;
            foreach (NameMatcher name in names ?? new NameMatcher[0])
            {
                if (!name.IsExact) continue;
                exactNames = true;
                if (written.Any(name.Matches)) continue;
                bool host = name.Given.IndexOf('.') < 0 && !PipelineInput.IsMachineId(name.Given);
                WriteError(DefenderErrors.ModuleError("NotFound", DefenderStatus.NotFound, "No device is named '" + name.Given + "'" +
                    (host ? " or '" + name.Given + ".*'" : "") + " (with the other conditions given).",
                    ErrorCategory.ObjectNotFound, new DefenderTarget(null, null, name.Given),
                    "Check the name: Get-DefenderMachine -Name 'part*' finds the names that start with it."));
            }
            if (written.Count == 0 && !exactNames)
                NothingMatched("No device matches " + Selection() + ". Tags, groups and names are matched whole (ignoring case) unless they " +
                    "have wildcards (* ?); Tab completes the tenant's tags, groups and platforms.", Selection(), true);
        }

        static IEnumerable<string> Tags(PSObject machine)
        {
            PSPropertyInfo tags = machine.Properties["machineTags"];
            if (tags == null || tags.Value == null) yield break;
            object value = tags.Value is PSObject ? ((PSObject)tags.Value).BaseObject : tags.Value;
            System.Collections.IEnumerable many = value as System.Collections.IEnumerable;
            if (many == null || value is string)
            {
                yield return value.ToString();
                yield break;
            }
            foreach (object tag in many) if (tag != null) yield return tag.ToString();
        }

        // "-Tag 'Incident*' -GroupName 'Servers'": the selection as given.
        string Selection()
        {
            List<string> given = new List<string>();
            foreach (KeyValuePair<string, object> parameter in MyInvocation.BoundParameters)
            {
                if (parameter.Key == "Connection" || Ignored.Contains(parameter.Key)) continue;
                string[] values = parameter.Value as string[];
                string shown = values != null
                    ? string.Join(", ", values.Select(PipelineInput.Quote).ToArray())
                    : PipelineInput.Quote(Convert.ToString(parameter.Value, System.Globalization.CultureInfo.InvariantCulture));
                given.Add("-" + parameter.Key + " " + shown);
            }
            return given.Count == 0 ? "the query" : string.Join(" ", given.ToArray());
        }

        static readonly HashSet<string> Ignored = new HashSet<string>(
            PSCmdlet.CommonParameters.Concat(PSCmdlet.OptionalCommonParameters), StringComparer.OrdinalIgnoreCase);
    }
}
