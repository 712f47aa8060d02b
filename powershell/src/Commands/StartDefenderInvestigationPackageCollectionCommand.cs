using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Start-DefenderInvestigationPackageCollection (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Start, "DefenderInvestigationPackageCollection", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
        DefaultParameterSetName = MachineIdSet, HelpUri = Help.Base + "start-defenderinvestigationpackagecollection")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class StartDefenderInvestigationPackageCollectionCommand : DefenderApiCmdlet
    {
        const string MachineIdSet = "MachineId";
        const string ComputerNameSet = "ComputerName";
        const string InputObjectSet = "InputObject";

        /// <summary>Device ids (40 hexadecimal characters).</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = MachineIdSet)]
        [ValidateNotNullOrEmpty]
        public string[] MachineId { get; set; }

        /// <summary>Computer names, each looked up first (Get-DefenderMachine -Id's rules: the device seen last).</summary>
        [Parameter(Mandatory = true, ParameterSetName = ComputerNameSet)]
        [ValidateNotNullOrEmpty]
        public string[] ComputerName { get; set; }

        /// <summary>Devices, or objects that name one (a machine action: its device), from the pipeline.</summary>
        [Parameter(Mandatory = true, ParameterSetName = InputObjectSet, ValueFromPipeline = true)]
        [ValidateNotNull]
        public PSObject[] InputObject { get; set; }

        [Parameter(Mandatory = true)]
        [ValidateNotNullOrEmpty]
        public string Comment { get; set; }

        protected override void ProcessRecord()
        {
            object[] inputs = ParameterSetName == MachineIdSet ? MachineId : ParameterSetName == ComputerNameSet ? ComputerName : (object[])InputObject;
            foreach (object input in inputs)
            {
                DefenderTarget target = ParameterSetName == ComputerNameSet
                    ? new DefenderTarget(null, null, (string)input)
                    : Classify(input, InputKind.Device);
                if (target == null) continue;
                // An action stands for its device; a name is looked up first.
                DefenderTarget device = target.MachineId != null ? new DefenderTarget(null, target.MachineId, target.ComputerDnsName) : Scope.DeviceOf(target);
                if (device == null) continue;
                if (!ShouldProcess(device.ToString(), "Collect an investigation package")) continue;
                PSObject action = Scope.CollectInvestigationPackage(device, Comment);
                if (action != null) WriteObject(action);
            }
        }
    }
}
