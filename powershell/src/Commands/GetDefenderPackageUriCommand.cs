using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderPackageUri (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderPackageUri")]
    [OutputType("DefenderPackage.PackageUri")]
    public sealed class GetDefenderPackageUriCommand : ActionIdCommand
    {
        internal override PSObject Call(CommandScope scope, string actionId)
        {
            return scope.GetPackageUri(actionId);
        }
    }
}
