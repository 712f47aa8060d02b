using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderPackageUri (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderPackageUri", DefaultParameterSetName = ActionIdSet, HelpUri = Help.Base + "get-defenderpackageuri")]
    [OutputType("DefenderPackage.PackageUri")]
    public sealed class GetDefenderPackageUriCommand : ActionCommand
    {
        internal override PSObject Call(CommandScope scope, DefenderTarget action)
        {
            return scope.GetPackageUri(action);
        }
    }
}
