using System.Collections.Generic;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderMachine (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderMachine", DefaultParameterSetName = QuerySet)]
    [OutputType("DefenderPackage.Machine")]
    public sealed class GetDefenderMachineCommand : DefenderCmdlet
    {
        const string QuerySet = "Query";
        const string IdSet = "Id";

        /// <summary>Device ids (40 hexadecimal characters) or computer names, each looked up on its own.</summary>
        [Parameter(Mandatory = true, ParameterSetName = IdSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("MachineId")]
        [ValidateNotNullOrEmpty]
        public string[] Id { get; set; }

        [Parameter(Position = 0, ParameterSetName = QuerySet)]
        [Alias("ComputerName", "ComputerDnsName")]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; }

        [Parameter(ParameterSetName = QuerySet)]
        [ValidateNotNullOrEmpty]
        public string Tag { get; set; }

        /// <summary>The rbac group's name: matched here, as the service cannot filter on it.</summary>
        [Parameter(ParameterSetName = QuerySet)]
        [Alias("RbacGroupName")]
        [ValidateNotNullOrEmpty]
        public string GroupName { get; set; }

        [Parameter(ParameterSetName = QuerySet)]
        [ValidateNotNullOrEmpty]
        public string HealthStatus { get; set; }

        [Parameter(ParameterSetName = QuerySet)]
        [ValidateNotNullOrEmpty]
        public string OsPlatform { get; set; }

        /// <summary>An OData $filter passed to the service as it is (joined with "and" to the others).</summary>
        [Parameter(ParameterSetName = QuerySet)]
        [ValidateNotNullOrEmpty]
        public string Filter { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == IdSet)
            {
                foreach (string id in Id)
                {
                    PSObject machine = Scope.GetMachine(id);
                    if (machine != null) WriteObject(machine);
                }
                return;
            }
            ODataFilter filter = new ODataFilter();
            WildcardPattern name = filter.AddComputerName(Name);
            filter.AddTag(Tag);
            filter.AddEquals("healthStatus", HealthStatus);
            filter.AddEquals("osPlatform", OsPlatform);
            filter.AddRaw(Filter);
            WildcardPattern group = GroupName == null ? null
                : new WildcardPattern(GroupName, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant);
            IList<PSObject> machines = Scope.ListMachines(filter.Build());
            if (machines == null) return;
            int written = 0;
            foreach (PSObject machine in machines)
            {
                if (name != null && !name.IsMatch(Text(machine, "computerDnsName"))) continue;
                if (group != null && !group.IsMatch(Text(machine, "rbacGroupName"))) continue;
                WriteObject(machine);
                written++;
            }
            if (written == 0 && Name != null && !WildcardPattern.ContainsWildcardCharacters(Name))
                WriteError(ModuleError("NotFound", "No device is named '" + Name + "'" +
                    (Name.IndexOf('.') < 0 ? " or '" + Name + ".*'" : "") + " (with the other conditions given).",
                    ErrorCategory.ObjectNotFound, Name));
        }

        static string Text(PSObject item, string property)
        {
            PSPropertyInfo value = item.Properties[property];
            return value == null || value.Value == null ? "" : value.Value.ToString();
        }
    }
}
