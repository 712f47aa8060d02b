// Failures as PowerShell error records: one exception type (DefenderException, the library's
// status and message, also for what the module finds itself), ErrorId Defender.<Status> (or the
// module's own reason), a fitting category, the target (a DefenderTarget naming the action and
// the device), and a RecommendedAction where there is one.

using System;
using System.Globalization;
using System.Management.Automation;
using System.Text;

namespace Defender.PowerShell
{
    /// <summary>Failures of the library as PowerShell error records.</summary>
    public static class DefenderErrors
    {
        /// <summary>
        /// An error record with ErrorId Defender.&lt;Status&gt; (e.g. Defender.NotReady for the
        /// library's NOT_READY), a fitting category, the library's message, a recommended action
        /// where there is one, and <paramref name="target"/> (a DefenderTarget, or what the
        /// failure is about).
        /// </summary>
        public static ErrorRecord ToErrorRecord(DefenderException exception, object target)
        {
            return ToErrorRecord(exception, target, null);
        }

        /// <summary>
        /// <see cref="ToErrorRecord(DefenderException, object)"/> with the command's own
        /// <paramref name="recommendedAction"/> (null: the module's for the status).
        /// </summary>
        internal static ErrorRecord ToErrorRecord(DefenderException exception, object target, string recommendedAction)
        {
            if (exception == null) throw new ArgumentNullException("exception");
            return Record(exception, ErrorIdOf(exception), CategoryOf(exception.Status), target,
                recommendedAction ?? RecommendedActionFor(exception.Status));
        }

        /// <summary>
        /// An error record for a failure the module finds itself, in the form of the library's:
        /// a DefenderException with <paramref name="status"/>, ErrorId Defender.<paramref name="reason"/>.
        /// </summary>
        internal static ErrorRecord ModuleError(string reason, DefenderStatus status, string message, ErrorCategory category,
            object target, string recommendedAction)
        {
            return Record(new DefenderException(status, message), reason, category, target, recommendedAction);
        }

        static ErrorRecord Record(DefenderException exception, string reason, ErrorCategory category, object target, string recommendedAction)
        {
            ErrorRecord record = new ErrorRecord(exception, "Defender." + reason, category, target);
            if (recommendedAction != null) record.ErrorDetails = new ErrorDetails(exception.Message) { RecommendedAction = recommendedAction };
            return record;
        }

        // What to do about a failure of the library, where something can be done.
        static string RecommendedActionFor(DefenderStatus status)
        {
            switch (status)
            {
                case DefenderStatus.NotReady:
                    return "Wait for the collection: Save-DefenderInvestigationPackage -Wait, or Wait-DefenderMachineAction first.";
                case DefenderStatus.NotFound:
                    return "Check the id or name: Get-DefenderMachine and Get-DefenderMachineAction list what exists.";
                case DefenderStatus.ActionFailed:
                    return "Start a new collection on the device with Start-DefenderInvestigationPackageCollection.";
                case DefenderStatus.Unauthorized:
                    return "Check the tenant, the app's client id and its secret or certificate (or the managed identity), then run Connect-DefenderApi again.";
                case DefenderStatus.Forbidden:
                    return "Grant the app the application permissions Machine.CollectForensics and Machine.Read.All on WindowsDefenderATP (with admin consent), and check its access to the device's group.";
                case DefenderStatus.RateLimited:
                    return "Wait a few minutes and run it again; the service allows 2 download links a minute and 100 other calls per app.";
                case DefenderStatus.Timeout:
                    return "Give the command more time (-Timeout), or check the network to the host named in the message.";
                case DefenderStatus.Network:
                    return "Check the network, proxy and firewall between this machine and the host named in the message.";
                case DefenderStatus.Exists:
                    return "Add -Force to replace the file, or give another -Path.";
                case DefenderStatus.Integrity:
                    return "Run the command again: the package is downloaded afresh.";
                case DefenderStatus.Io:
                    return "Check the folder's path, free space and permissions.";
                default:
                    return null;
            }
        }

        // The library's name of the status in PascalCase (NOT_READY: NotReady), so that a status
        // this module does not know yet still gets its name; a number the library does not name
        // either stays a number.
        static string ErrorIdOf(DefenderException exception)
        {
            string name = exception.StatusName;
            if (name == "UNKNOWN") return ((int)exception.Status).ToString(CultureInfo.InvariantCulture);
            StringBuilder id = new StringBuilder(name.Length);
            foreach (string word in name.Split('_'))
            {
                if (word.Length == 0) continue;
                id.Append(char.ToUpperInvariant(word[0])).Append(word.Substring(1).ToLowerInvariant());
            }
            return id.ToString();
        }

        internal static ErrorCategory CategoryOf(DefenderStatus status)
        {
            switch (status)
            {
                case DefenderStatus.InvalidArgument: return ErrorCategory.InvalidArgument;
                case DefenderStatus.NotReady: return ErrorCategory.ResourceUnavailable;
                case DefenderStatus.NotFound: return ErrorCategory.ObjectNotFound;
                case DefenderStatus.Unauthorized: return ErrorCategory.AuthenticationError;
                case DefenderStatus.Forbidden: return ErrorCategory.PermissionDenied;
                case DefenderStatus.RateLimited: return ErrorCategory.LimitsExceeded;
                case DefenderStatus.Http: return ErrorCategory.InvalidResult;
                case DefenderStatus.Network: return ErrorCategory.ConnectionError;
                case DefenderStatus.Timeout: return ErrorCategory.OperationTimeout;
                case DefenderStatus.Io: return ErrorCategory.WriteError;
                case DefenderStatus.Integrity: return ErrorCategory.InvalidData;
                case DefenderStatus.Cancelled: return ErrorCategory.OperationStopped;
                case DefenderStatus.ActionFailed: return ErrorCategory.InvalidResult;
                case DefenderStatus.Protocol: return ErrorCategory.ProtocolError;
                case DefenderStatus.Exists: return ErrorCategory.ResourceExists;
                case DefenderStatus.UnknownOption: return ErrorCategory.InvalidArgument;
                default: return ErrorCategory.NotSpecified;
            }
        }
    }
}
