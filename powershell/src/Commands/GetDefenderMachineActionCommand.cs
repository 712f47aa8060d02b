using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderMachineAction", DefaultParameterSetName = ListSet, HelpUri = Help.Base + "get-defendermachineaction")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class GetDefenderMachineActionCommand : DefenderApiCmdlet
    {
        const string ListSet = "List";

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ActionCommand.ActionIdSet)]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        /// <summary>Devices (their actions), or machine actions, packages and links (the action again), from the pipeline.</summary>
        [Parameter(Mandatory = true, ParameterSetName = ActionCommand.InputObjectSet, ValueFromPipeline = true)]
        [ValidateNotNull]
        public PSObject[] InputObject { get; set; }

        /// <summary>E.g. CollectInvestigationPackage, Isolate, RunAntiVirusScan.</summary>
        [Parameter(ParameterSetName = ListSet)]
        [Parameter(ParameterSetName = ActionCommand.InputObjectSet)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(ActionTypeCompleter))]
        public string Type { get; set; }

        [Parameter(ParameterSetName = ListSet)]
        [Parameter(ParameterSetName = ActionCommand.InputObjectSet)]
        [ValidateSet("Pending", "InProgress", "Succeeded", "Failed", "TimeOut", "Cancelled", IgnoreCase = true)]
        public string Status { get; set; }

        [Parameter(ParameterSetName = ListSet)]
        [ValidateNotNullOrEmpty]
        public string MachineId { get; set; }

        /// <summary>Actions created at or after this time (a local time unless it says otherwise).</summary>
        [Parameter(ParameterSetName = ListSet)]
        [Parameter(ParameterSetName = ActionCommand.InputObjectSet)]
        public DateTime Since { get; set; }

        [Parameter(ParameterSetName = ListSet)]
        [Parameter(ParameterSetName = ActionCommand.InputObjectSet)]
        [ValidateNotNullOrEmpty]
        public string Requestor { get; set; }

        /// <summary>An OData $filter passed to the service as it is (joined with "and" to the others).</summary>
        [Parameter(ParameterSetName = ListSet)]
        [Parameter(ParameterSetName = ActionCommand.InputObjectSet)]
        [ValidateNotNullOrEmpty]
        public string Filter { get; set; }

        static readonly string[] ListParameters = { "Type", "Status", "Since", "Requestor", "Filter" };

        protected override void ProcessRecord()
        {
            if (ParameterSetName == ListSet)
            {
                List(MachineId, null);
                return;
            }
            foreach (object input in (object[])ActionId ?? InputObject)
            {
                DefenderTarget target = Classify(input, InputKind.Action);
                if (target == null) continue;
                if (!target.IsAction)
                {
                    // A device: its actions.
                    DefenderTarget device = Scope.DeviceOf(target);
                    if (device != null) List(device.MachineId, device);
                    continue;
                }
                string[] given = ListParameters.Where(MyInvocation.BoundParameters.ContainsKey).ToArray();
                if (given.Length > 0)
                {
                    WriteError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                        "-" + string.Join(", -", given) + " select among a device's actions; " + target + " is one action already.",
                        ErrorCategory.InvalidArgument, target, "Pipe devices to select among their actions, or leave those parameters out."));
                    continue;
                }
                PSObject action = Scope.GetMachineAction(target);
                if (action != null) WriteObject(action);
            }
        }

        // The actions the list parameters select, of the device (when given), newest first.
        void List(string machineId, DefenderTarget device)
        {
            ODataFilter filter = new ODataFilter();
            filter.AddEquals("type", Type);
            filter.AddEquals("status", Status);
            filter.AddEquals("machineId", machineId);
            filter.AddSince("creationDateTimeUtc", MyInvocation.BoundParameters.ContainsKey("Since") ? Since : (DateTime?)null);
            filter.AddEquals("requestor", Requestor);
            filter.AddRaw(Filter);
            IList<PSObject> actions = Scope.ListMachineActions(filter.Build(), device);
            if (actions == null) return;
            WriteObject(actions, true);
            if (actions.Count > 0) return;
            string[] given = ListParameters.Where(MyInvocation.BoundParameters.ContainsKey).ToArray();
            string matching = given.Length == 0 ? "" : " matching -" + string.Join(", -", given);
            // A warning only: no action (yet) is an answer, where no device is a mistake.
            if (device != null)
                NothingMatched("Device " + device.Device + " has no machine action" + matching + ".", device, false);
            else
                NothingMatched("No machine action matches " + (filter.Build() ?? "the query") + ".", filter.Build(), false);
        }
    }

    /// <summary>Completes -Type with the machine action types the service documents.</summary>
    public sealed class ActionTypeCompleter : IArgumentCompleter
    {
        static readonly string[] Types =
        {
            "CollectInvestigationPackage", "Isolate", "Unisolate", "RunAntiVirusScan", "Offboard", "StopAndQuarantineFile",
            "RestrictCodeExecution", "UnrestrictCodeExecution", "LiveResponse",
        };

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            System.Management.Automation.Language.CommandAst commandAst, System.Collections.IDictionary fakeBoundParameters)
        {
            return Completion.Matching(Types, wordToComplete, "machine action type");
        }
    }
}
