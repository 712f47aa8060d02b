// The progress bars of a command's items: what each is doing (the library's phases), named after
// the action and its device.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;

namespace Defender.PowerShell
{
    /// <summary>
    /// The progress bars of a command's items: one per item, showing its phase (waiting for the
    /// collection or for a live response session, queued for the rate limit, downloading,
    /// verifying, retrying) from its first
    /// report until it is finished, and, for several, one for the whole ("n of N packages") that
    /// the others are children of.
    /// </summary>
    sealed class PackageProgress
    {
        const int OverallActivityId = 1;

        readonly PSCmdlet command;
        readonly IList<string> items;
        readonly string itemActivity;
        readonly bool[] shown;
        readonly string overallActivity;
        readonly string noun;
        int finished;

        /// <param name="items">What each item is about, as shown (a DefenderTarget's text: the action and its device).</param>
        /// <param name="itemActivity">The activity of an item's bar, {0} being what it is about.</param>
        /// <param name="overallActivity">The overall bar's activity, {0} being the number of items.</param>
        /// <param name="noun">What the items are, in the overall bar's status ("2 of 5 packages").</param>
        internal PackageProgress(PSCmdlet command, IList<string> items, string itemActivity,
            string overallActivity = "Saving {0} investigation packages", string noun = "packages")
        {
            this.command = command;
            this.items = items;
            this.itemActivity = itemActivity;
            this.noun = noun;
            shown = new bool[items.Count];
            this.overallActivity = string.Format(CultureInfo.CurrentCulture, overallActivity, items.Count);
            if (Several) WriteOverall(ProgressRecordType.Processing);
        }

        // One item needs no bar above its own.
        bool Several
        {
            get { return items.Count > 1; }
        }

        /// <summary>What the items' waits are for, in their bars: "the collection" (default), "the live response session".</summary>
        internal string Awaited { get; set; } = "the collection";

        /// <summary>What item <paramref name="phase"/>.Index is doing now.</summary>
        internal void Report(PhaseEvent phase)
        {
            int index = phase.Index;
            if (index < 0 || index >= items.Count) return;
            // A new record each time: a host may keep the records it was given.
            ProgressRecord progress = ItemRecord(index, "Working");
            Describe(phase, progress, Awaited);
            command.WriteProgress(progress);
            shown[index] = true;
        }

        /// <summary>Item <paramref name="index"/> is finished, saved or not: its bar goes.</summary>
        internal void Finish(int index)
        {
            CompleteItem(index);
            finished++;
            if (Several) WriteOverall(ProgressRecordType.Processing);
        }

        /// <summary>Removes the bars still shown (of items a failure or cancellation stopped).</summary>
        internal void Close()
        {
            // Writing to a stopping pipeline throws; the bars go away with it anyway.
            if (command.Stopping) return;
            for (int index = 0; index < shown.Length; index++) CompleteItem(index);
            if (Several) WriteOverall(ProgressRecordType.Completed);
        }

        void CompleteItem(int index)
        {
            if (!shown[index]) return;
            shown[index] = false;
            ProgressRecord completed = ItemRecord(index, "Done");
            completed.RecordType = ProgressRecordType.Completed;
            command.WriteProgress(completed);
        }

        ProgressRecord ItemRecord(int index, string status)
        {
            ProgressRecord record = new ProgressRecord(OverallActivityId + 1 + index,
                string.Format(CultureInfo.CurrentCulture, itemActivity, items[index]), status);
            if (Several) record.ParentActivityId = OverallActivityId;
            return record;
        }

        void WriteOverall(ProgressRecordType type)
        {
            string status = string.Format(CultureInfo.CurrentCulture, "{0} of {1} {2}", finished, items.Count, noun);
            ProgressRecord overall = new ProgressRecord(OverallActivityId, overallActivity, status);
            overall.PercentComplete = finished * 100 / items.Count;
            overall.RecordType = type;
            command.WriteProgress(overall);
        }

        /// <summary>The bar's status (what the item is doing) and current operation (the detail).</summary>
        static void Describe(PhaseEvent phase, ProgressRecord record, string awaited)
        {
            switch (phase.Phase)
            {
                case DefenderPhase.WaitingForCollection:
                    record.StatusDescription = "Waiting for " + awaited + " to finish: " + phase.Detail + " for " + Duration(phase.Elapsed);
                    if (phase.Remaining.HasValue) record.CurrentOperation = "Looking again in " + Duration(phase.Remaining.Value);
                    break;
                case DefenderPhase.QueuedForRateLimit:
                    record.StatusDescription = phase.QueuePosition <= 1
                        ? "Next in line for the API's rate limit"
                        : string.Format(CultureInfo.CurrentCulture, "Queued for the API's rate limit: {0} call{1} ahead",
                            phase.QueuePosition - 1, phase.QueuePosition == 2 ? "" : "s");
                    record.CurrentOperation = phase.Remaining.HasValue
                        ? "About " + Duration(phase.Remaining.Value) + " to go"
                        : "Waiting for calls in flight to be answered";
                    if (phase.Remaining.HasValue) record.SecondsRemaining = Seconds(phase.Remaining.Value);
                    break;
                case DefenderPhase.WaitingForDownloadSlot:
                    record.StatusDescription = "Ready; waiting for a download slot (max_concurrent_downloads)";
                    break;
                case DefenderPhase.Downloading:
                    record.StatusDescription = DescribeBytes(phase.BytesDone, phase.BytesTotal);
                    if (phase.BytesTotal > 0) record.PercentComplete = (int)Math.Min(100, phase.BytesDone * 100 / phase.BytesTotal);
                    record.CurrentOperation = phase.BytesPerSecond > 0 ? "Downloading at " + FormatBytes(phase.BytesPerSecond) + "/s" : "Downloading";
                    if (phase.BytesPerSecond > 0 && phase.BytesTotal > 0)
                        record.SecondsRemaining = (int)Math.Min(int.MaxValue, (phase.BytesTotal - phase.BytesDone) / phase.BytesPerSecond);
                    break;
                case DefenderPhase.Verifying:
                    record.StatusDescription = DescribeBytes(phase.BytesTotal, phase.BytesTotal);
                    record.PercentComplete = 100;
                    record.CurrentOperation = "Verifying the package";
                    break;
                case DefenderPhase.Retrying:
                    record.StatusDescription = string.Format(CultureInfo.CurrentCulture, "Retrying{0} (retry {1})",
                        phase.Remaining.HasValue ? " in " + Duration(phase.Remaining.Value) : "", phase.Attempt);
                    record.CurrentOperation = phase.Detail;
                    break;
                case DefenderPhase.WaitingForSession:
                    record.StatusDescription = "Waiting for a live response session: " + phase.Detail + " for " + Duration(phase.Elapsed);
                    if (phase.Remaining.HasValue) record.CurrentOperation = "Trying again in " + Duration(phase.Remaining.Value);
                    break;
                default:
                    record.StatusDescription = "Working";
                    break;
            }
        }

        static int Seconds(TimeSpan duration)
        {
            return (int)Math.Min(int.MaxValue, Math.Ceiling(duration.TotalSeconds));
        }

        // "12 s", "3 min 5 s", "1 h 20 min"
        static string Duration(TimeSpan duration)
        {
            if (duration.TotalSeconds < 60) return Math.Ceiling(duration.TotalSeconds).ToString(CultureInfo.CurrentCulture) + " s";
            if (duration.TotalMinutes < 60)
                return string.Format(CultureInfo.CurrentCulture, "{0} min {1} s", (int)duration.TotalMinutes, duration.Seconds);
            return string.Format(CultureInfo.CurrentCulture, "{0} h {1} min", (int)duration.TotalHours, duration.Minutes);
        }

        static string DescribeBytes(long done, long total)
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
}
