using System;
using System.Collections.Generic;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderMachineAction", DefaultParameterSetName = ListSet)]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class GetDefenderMachineActionCommand : DefenderCmdlet
    {
        const string ActionIdSet = "ActionId";
        const string ListSet = "List";

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ActionIdSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Id")]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        /// <summary>E.g. CollectInvestigationPackage, Isolate, RunAntiVirusScan.</summary>
        [Parameter(ParameterSetName = ListSet)]
        [ValidateNotNullOrEmpty]
        public string Type { get; set; }

        [Parameter(ParameterSetName = ListSet)]
        [ValidateSet("Pending", "InProgress", "Succeeded", "Failed", "TimeOut", "Cancelled", IgnoreCase = true)]
        public string Status { get; set; }

        [Parameter(ParameterSetName = ListSet)]
        [ValidateNotNullOrEmpty]
        public string MachineId { get; set; }

        /// <summary>Actions created at or after this time (a local time unless it says otherwise).</summary>
        [Parameter(ParameterSetName = ListSet)]
        public DateTime Since { get; set; }

        [Parameter(ParameterSetName = ListSet)]
        [ValidateNotNullOrEmpty]
        public string Requestor { get; set; }

        /// <summary>An OData $filter passed to the service as it is (joined with "and" to the others).</summary>
        [Parameter(ParameterSetName = ListSet)]
        [ValidateNotNullOrEmpty]
        public string Filter { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == ActionIdSet)
            {
                foreach (string id in ActionId)
                {
                    PSObject action = Scope.GetMachineAction(id);
                    if (action != null) WriteObject(action);
                }
                return;
            }
            ODataFilter filter = new ODataFilter();
            filter.AddEquals("type", Type);
            filter.AddEquals("status", Status);
            filter.AddEquals("machineId", MachineId);
            filter.AddSince("creationDateTimeUtc", MyInvocation.BoundParameters.ContainsKey("Since") ? Since : (DateTime?)null);
            filter.AddEquals("requestor", Requestor);
            filter.AddRaw(Filter);
            IList<PSObject> actions = Scope.ListMachineActions(filter.Build());
            if (actions != null) WriteObject(actions, true);
        }
    }
}
