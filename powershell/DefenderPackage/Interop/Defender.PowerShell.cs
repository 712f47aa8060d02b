// What the DefenderPackage module needs beyond the binding in Defender.cs: the library's log
// lines and progress written to a command's streams, Ctrl+C turned into a cancellation, and
// failures turned into ErrorRecords. C# 5, like Defender.cs, for Windows PowerShell 5.1.
//
// Native callbacks arrive on the pipeline thread (the library calls them on the thread that made
// the call), so writing to the command from them is safe. Nothing here ever runs a script block
// on another thread: the watchdog timer only reads the command's Stopping flag and cancels.

using System;
using System.Globalization;
using System.Management.Automation;
using System.Threading;

namespace Defender.PowerShell
{
    /// <summary>
    /// One command's use of the client, from its creation to Dispose: the client's log lines go to
    /// the command's Verbose, Warning and Debug streams, and stopping the pipeline (Ctrl+C)
    /// cancels the native call in flight.
    /// </summary>
    /// <remarks>
    /// A script function cannot override StopProcessing, and the engine cannot interrupt a
    /// blocking native call, so a timer polls the command's Stopping flag while the scope lives.
    /// </remarks>
    public sealed class CommandScope : IDisposable
    {
        const int WatchdogPeriodMilliseconds = 100;
        const int ProgressActivityId = 1;

        readonly DefenderClient client;
        readonly PSCmdlet command;
        readonly CancellationTokenSource stop = new CancellationTokenSource();
        readonly Timer watchdog;

        public CommandScope(DefenderClient client, PSCmdlet command)
        {
            if (client == null) throw new ArgumentNullException("client");
            if (command == null) throw new ArgumentNullException("command");
            this.client = client;
            this.command = command;
            client.LogHandler = WriteLog;
            watchdog = new Timer(CheckStopping, null, WatchdogPeriodMilliseconds, WatchdogPeriodMilliseconds);
        }

        /// <summary>Cancelled when the pipeline stops.</summary>
        public CancellationToken Cancellation
        {
            get { return stop.Token; }
        }

        /// <summary>Downloads a package with a progress bar on the command's progress stream.</summary>
        public DownloadedPackage DownloadPackage(string actionId, string destination)
        {
            ProgressRecord progress = new ProgressRecord(ProgressActivityId,
                "Saving the investigation package of machine action " + actionId, "Starting");
            try
            {
                return client.DownloadPackage(actionId, destination, delegate(long done, long total)
                {
                    progress.StatusDescription = DescribeProgress(done, total);
                    if (total > 0) progress.PercentComplete = (int)Math.Min(100, done * 100 / total);
                    command.WriteProgress(progress);
                }, Cancellation);
            }
            finally
            {
                // Writing to a stopping pipeline throws; the bar goes away with it anyway.
                if (!command.Stopping)
                {
                    progress.RecordType = ProgressRecordType.Completed;
                    command.WriteProgress(progress);
                }
            }
        }

        public void Dispose()
        {
            watchdog.Dispose();
            client.LogHandler = null;
            stop.Dispose();
        }

        void CheckStopping(object state)
        {
            try
            {
                if (!command.Stopping) return;
                stop.Cancel();
                // Again on every tick: a cancel that lands just before a native call starts would
                // otherwise be missed by it.
                client.Cancel();
            }
            catch (Exception)
            {
                // An exception on a timer thread ends the process; the only one expected here is
                // ObjectDisposedException when the command finished meanwhile.
            }
        }

        void WriteLog(DefenderLogLevel level, string message)
        {
            switch (level)
            {
                case DefenderLogLevel.Warn:
                    command.WriteWarning(message);
                    break;
                case DefenderLogLevel.Debug:
                    command.WriteDebug(message);
                    break;
                default:
                    // Error lines announce the failure that the command reports as an error record.
                    command.WriteVerbose(message);
                    break;
            }
        }

        static string DescribeProgress(long done, long total)
        {
            if (total <= 0) return FormatBytes(done);
            return FormatBytes(done) + " of " + FormatBytes(total);
        }

        static string FormatBytes(long bytes)
        {
            string[] units = { "bytes", "KiB", "MiB", "GiB", "TiB" };
            double value = bytes;
            int unit = 0;
            while (value >= 1024 && unit < units.Length - 1)
            {
                value /= 1024;
                unit++;
            }
            return unit == 0
                ? bytes.ToString(CultureInfo.CurrentCulture) + " bytes"
                : value.ToString("0.0", CultureInfo.CurrentCulture) + " " + units[unit];
        }
    }

    /// <summary>Failures of the library as PowerShell error records.</summary>
    public static class DefenderErrors
    {
        /// <summary>
        /// An error record with ErrorId Defender.&lt;Status&gt; (e.g. Defender.NotReady), a fitting
        /// category, the library's message, and <paramref name="target"/> (the action or machine id).
        /// </summary>
        public static ErrorRecord ToErrorRecord(DefenderException exception, object target)
        {
            if (exception == null) throw new ArgumentNullException("exception");
            return new ErrorRecord(exception, "Defender." + exception.Status, CategoryOf(exception.Status), target);
        }

        static ErrorCategory CategoryOf(DefenderStatus status)
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
                default: return ErrorCategory.NotSpecified;
            }
        }
    }
}
