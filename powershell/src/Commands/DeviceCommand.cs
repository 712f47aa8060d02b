using System.Collections.Generic;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>
    /// A cmdlet that works on devices: -MachineId, -ComputerName (looked up first), or pipeline
    /// objects (-InputObject) classified by what they are: devices, strings (an id or a computer
    /// name), and machine actions or results, which stand for their device.
    /// </summary>
    public abstract class DeviceCommand : DefenderApiCmdlet
    {
        internal const string MachineIdSet = "MachineId";
        internal const string ComputerNameSet = "ComputerName";
        internal const string InputObjectSet = "InputObject";

        /// <summary>Device ids (40 hexadecimal characters).</summary>
        [Parameter(Mandatory = true, ParameterSetName = MachineIdSet)]
        [ValidateNotNullOrEmpty]
        public string[] MachineId { get; set; }

        /// <summary>Computer names (Get-DefenderMachine -Id's rules: a host name finds its fully qualified name; of several devices, the one seen last).</summary>
        [Parameter(Mandatory = true, ParameterSetName = ComputerNameSet)]
        [ValidateNotNullOrEmpty]
        public string[] ComputerName { get; set; }

        /// <summary>Devices, or objects that name one (a machine action: its device), from the pipeline.</summary>
        [Parameter(Mandatory = true, ParameterSetName = InputObjectSet, ValueFromPipeline = true)]
        [ValidateNotNull]
        public PSObject[] InputObject { get; set; }

        /// <summary>
        /// The devices of this pipeline step, each with its id: a name (or an action whose device is
        /// not known) is looked up first, as Start-DefenderInvestigationPackageCollection does, so
        /// that results, prompts and errors name the device by its full name and id. Bad objects and
        /// unknown devices write an error and are left out.
        /// </summary>
        internal IEnumerable<DefenderTarget> Devices()
        {
            object[] inputs = ParameterSetName == MachineIdSet ? MachineId : ParameterSetName == ComputerNameSet ? ComputerName : (object[])InputObject;
            foreach (object input in inputs)
            {
                DefenderTarget target = ParameterSetName == ComputerNameSet
                    ? new DefenderTarget(null, null, (string)input)
                    : Classify(input, InputKind.Device);
                if (target == null) continue;
                DefenderTarget device = target.MachineId != null ? new DefenderTarget(null, target.MachineId, target.ComputerDnsName) : Scope.DeviceOf(target);
                if (device != null) yield return device;
            }
        }

        internal override string RecommendedAction(DefenderStatus status)
        {
            switch (status)
            {
                case DefenderStatus.ActionFailed:
                    return "The message has each failed command's errors; Get-DefenderMachineAction -ActionId <the TargetObject's ActionId> shows the session's commands and their status.";
                case DefenderStatus.Forbidden:
                    return "Grant the app the application permission Machine.LiveResponse (and Library.Manage for the library) on WindowsDefenderATP with admin consent, and check its access to the device's group and that live response is on in the tenant's advanced features.";
                case DefenderStatus.Timeout:
                    return "Give the command more time (-Timeout): a session for a device that is offline is queued for up to three days.";
                default:
                    return null;
            }
        }
    }
}
