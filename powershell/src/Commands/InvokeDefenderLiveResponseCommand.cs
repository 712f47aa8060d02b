using System;
using System.Collections.Generic;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Invoke-DefenderLiveResponse (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Invoke, "DefenderLiveResponse", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High,
        DefaultParameterSetName = MachineIdSet, HelpUri = Help.Base + "invoke-defenderliveresponse")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class InvokeDefenderLiveResponseCommand : DeviceCommand
    {
        List<LiveResponseCommand> commands;

        /// <summary>The session's commands: LiveResponseCommand objects, hashtables, or the service's JSON.</summary>
        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNullOrEmpty]
        public object[] Command { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Comment { get; set; }

        [Parameter]
        public SwitchParameter Wait { get; set; }

        /// <summary>With -Wait: seconds to wait for the session to start (session limits) and end.</summary>
        [Parameter]
        [ValidateRange(1, 2147483)]
        public int Timeout { get; set; }

        public InvokeDefenderLiveResponseCommand()
        {
            Timeout = 3600;
        }

        internal override IDictionary<string, string> CallOptions
        {
            // Without -Wait, 0: the library returns the session as soon as it has started.
            get { return new Dictionary<string, string> { { "wait_timeout_ms", Wait ? Help.Milliseconds(Timeout) : "0" } }; }
        }

        internal override string Reword(string message)
        {
            return Wait ? Help.RewordTimeout(message, Timeout) : Help.RewordWaitForSession(message);
        }

        protected override void BeginProcessing()
        {
            if (MyInvocation.BoundParameters.ContainsKey("Timeout") && !Wait)
                ThrowTerminatingError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                    "-Timeout applies with -Wait: add -Wait to wait for the sessions, for up to -Timeout seconds each.", ErrorCategory.InvalidArgument, null, null));
            try
            {
                commands = LiveResponseCommands.From(Command);
            }
            catch (ArgumentException e)
            {
                ThrowTerminatingError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument, e.Message,
                    ErrorCategory.InvalidArgument, Command, "Give each command as @{ Type = 'GetFile'; Path = 'C:\\x.log' }, [Defender.LiveResponseCommand]::GetFile('C:\\x.log'), or the service's JSON."));
            }
        }

        protected override void ProcessRecord()
        {
            List<string> types = new List<string>();
            foreach (LiveResponseCommand command in commands) types.Add(command.Type);
            foreach (DefenderTarget device in Devices())
            {
                if (!ShouldProcess(device.ToString(), "Run live response commands " + string.Join(", ", types))) continue;
                PSObject action = Scope.RunLiveResponse(device, commands, Comment);
                if (action != null) WriteObject(action);
            }
        }
    }
}
