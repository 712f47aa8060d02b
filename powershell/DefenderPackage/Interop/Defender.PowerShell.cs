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
    /// One command's use of the client, from its creation to Dispose: calls whose failures are
    /// the command's non-terminating errors, the client's log lines on the command's Verbose,
    /// Warning and Debug streams, and stopping the pipeline (Ctrl+C) cancelling the native call
    /// in flight.
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

        // The calls below return null after writing a failure of the library to the command as
        // a non-terminating error about the id, so that the next pipeline item goes on. They
        // catch it here, in C#: an exception that passes through script code is also recorded
        // in the command's -ErrorVariable, once per script frame.

        /// <summary>Signs in now; a failure is thrown (Connect-DefenderApi makes it terminating).</summary>
        public void SignIn()
        {
            client.SignIn(stop.Token);
        }

        public MachineAction GetMachineAction(string actionId)
        {
            return Run(actionId, delegate { return client.GetMachineAction(actionId, stop.Token); });
        }

        public MachineAction WaitForAction(string actionId)
        {
            return Run(actionId, delegate { return client.WaitForAction(actionId, stop.Token); });
        }

        public MachineAction CollectInvestigationPackage(string machineId, string comment)
        {
            return Run(machineId, delegate { return client.CollectInvestigationPackage(machineId, comment, stop.Token); });
        }

        public string GetPackageUri(string actionId)
        {
            return Run(actionId, delegate { return client.GetPackageUri(actionId, stop.Token); });
        }

        /// <summary>Downloads a package with a progress bar on the command's progress stream.</summary>
        public DownloadedPackage DownloadPackage(string actionId, string destination)
        {
            string activity = "Saving the investigation package of machine action " + actionId;
            try
            {
                return Run(actionId, delegate
                {
                    return client.DownloadPackage(actionId, destination, delegate(long done, long total)
                    {
                        // A new record each time: a host may keep the records it was given.
                        ProgressRecord progress = new ProgressRecord(ProgressActivityId, activity, DescribeProgress(done, total));
                        if (total > 0) progress.PercentComplete = (int)Math.Min(100, done * 100 / total);
                        command.WriteProgress(progress);
                    }, stop.Token);
                });
            }
            finally
            {
                // Writing to a stopping pipeline throws; the bar goes away with it anyway.
                if (!command.Stopping)
                {
                    ProgressRecord completed = new ProgressRecord(ProgressActivityId, activity, "Done");
                    completed.RecordType = ProgressRecordType.Completed;
                    command.WriteProgress(completed);
                }
            }
        }

        public void Dispose()
        {
            watchdog.Dispose();
            client.LogHandler = null;
            stop.Dispose();
        }

        T Run<T>(string target, Func<T> call) where T : class
        {
            try
            {
                return call();
            }
            catch (DefenderException e)
            {
                command.WriteError(DefenderErrors.ToErrorRecord(e, target));
                return null;
            }
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
