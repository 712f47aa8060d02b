using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>
    /// A cmdlet that does one call per machine action: ids from -ActionId, or pipeline objects
    /// (-InputObject) classified by what they are: ids (strings), machine actions, saved
    /// packages, links; a device stands for its newest investigation package collection.
    /// </summary>
    public abstract class ActionCommand : DefenderApiCmdlet
    {
        internal const string ActionIdSet = "ActionId";
        internal const string InputObjectSet = "InputObject";

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ActionIdSet)]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        /// <summary>Machine action ids or objects (machine actions, saved packages, links, devices), from the pipeline.</summary>
        [Parameter(Mandatory = true, ParameterSetName = InputObjectSet, ValueFromPipeline = true)]
        [ValidateNotNull]
        public PSObject[] InputObject { get; set; }

        /// <summary>The call for one action: its result, or null when it failed (an error was written).</summary>
        internal abstract PSObject Call(CommandScope scope, DefenderTarget action);

        /// <summary>The action a device given to this command stands for: its newest collection.</summary>
        internal virtual DefenderTarget ActionOf(CommandScope scope, DefenderTarget device)
        {
            return scope.LatestCollection(device);
        }

        protected override void ProcessRecord()
        {
            foreach (object input in (object[])ActionId ?? InputObject)
            {
                DefenderTarget target = Classify(input, InputKind.Action);
                if (target == null) continue;
                DefenderTarget action = target.IsAction ? target : ActionOf(Scope, target);
                if (action == null) continue;
                PSObject result = Call(Scope, action);
                if (result != null) WriteObject(result);
            }
        }
    }
}
