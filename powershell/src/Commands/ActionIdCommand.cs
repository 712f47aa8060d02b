using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>
    /// A cmdlet that does one call per machine action id, from -ActionId or the pipeline (strings,
    /// or objects with an Id or ActionId property), and writes what it returns.
    /// </summary>
    public abstract class ActionIdCommand : DefenderCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Id")]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        /// <summary>The call for one id: its result, or null when it failed (an error was written).</summary>
        internal abstract PSObject Call(CommandScope scope, string actionId);

        protected override void ProcessRecord()
        {
            foreach (string id in ActionId)
            {
                PSObject result = Call(Scope, id);
                if (result != null) WriteObject(result);
            }
        }
    }
}
