using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Start-DefenderInvestigationPackageCollection (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Start, "DefenderInvestigationPackageCollection", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
        DefaultParameterSetName = MachineIdSet)]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class StartDefenderInvestigationPackageCollectionCommand : DefenderCmdlet
    {
        const string MachineIdSet = "MachineId";
        const string ComputerNameSet = "ComputerName";

        /// <summary>Device ids: strings, or objects with a MachineId or Id (Get-DefenderMachine's devices).</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = MachineIdSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Id")]
        [ValidateNotNullOrEmpty]
        public string[] MachineId { get; set; }

        /// <summary>Computer names, each looked up first (Get-DefenderMachine -Id's rules: the device seen last).</summary>
        [Parameter(Mandatory = true, ParameterSetName = ComputerNameSet)]
        [ValidateNotNullOrEmpty]
        public string[] ComputerName { get; set; }

        [Parameter(Mandatory = true)]
        [ValidateNotNullOrEmpty]
        public string Comment { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == ComputerNameSet)
            {
                foreach (string name in ComputerName)
                {
                    PSObject machine = Scope.GetMachine(name);
                    if (machine == null) continue;
                    PSPropertyInfo id = machine.Properties["id"];
                    Collect(id == null ? null : id.Value as string, name);
                }
                return;
            }
            foreach (string id in MachineId) Collect(id, null);
        }

        void Collect(string id, string name)
        {
            string device = name == null ? "device " + id : "device " + name + " (" + id + ")";
            if (!ShouldProcess(device, "Collect an investigation package")) return;
            PSObject action = Scope.CollectInvestigationPackage(id, Comment);
            if (action != null) WriteObject(action);
        }
    }
}
