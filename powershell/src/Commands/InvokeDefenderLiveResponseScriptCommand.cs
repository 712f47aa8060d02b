using System.Collections.Generic;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Invoke-DefenderLiveResponseScript (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Invoke, "DefenderLiveResponseScript", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High,
        DefaultParameterSetName = ComputerNameSet, HelpUri = Help.Base + "invoke-defenderliveresponsescript")]
    [OutputType("DefenderPackage.LiveResponseScriptResult")]
    public sealed class InvokeDefenderLiveResponseScriptCommand : DeviceCommand
    {
        /// <summary>A script in the tenant's live response library (Publish-DefenderLibraryFile).</summary>
        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(LibraryFileCompleter))]
        public string ScriptName { get; set; }

        /// <summary>The script's arguments, as one string (the service's Args).</summary>
        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Arguments { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Comment { get; set; }

        /// <summary>Seconds to wait for each device's session to start and end.</summary>
        [Parameter]
        [ValidateRange(1, 2147483)]
        public int Timeout { get; set; }

        public InvokeDefenderLiveResponseScriptCommand()
        {
            Timeout = 3600;
        }

        internal override IDictionary<string, string> CallOptions
        {
            get { return new Dictionary<string, string> { { "wait_timeout_ms", Help.Milliseconds(Timeout) } }; }
        }

        internal override string Reword(string message)
        {
            return Help.RewordTimeout(message, Timeout);
        }

        protected override void ProcessRecord()
        {
            foreach (DefenderTarget device in Devices())
            {
                string what = "Run the script " + ScriptName + (Arguments != null ? " " + Arguments : "") + " (live response RunScript)";
                if (!ShouldProcess(device.ToString(), what)) continue;
                PSObject result = Scope.RunScript(device, ScriptName, Arguments, Comment);
                if (result != null) WriteObject(result);
            }
        }
    }
}
