// Where each command's online help is (HelpUri, Get-Help -Online), and the library's wording of
// its options turned into the parameters that set them, so that a message names what the user
// typed: -Timeout 30, not wait_timeout_ms = 30000; -Force, not the option 'overwrite'.

using System.Globalization;

namespace Defender.PowerShell
{
    static class Help
    {
        /// <summary>
        /// The PowerShell guide online, where each command has a section (its name in lower case as
        /// the anchor); the manifest's ProjectUri is the same project.
        /// </summary>
        internal const string Base = "https://example.invalid/defender-package/docs/powershell.md#";

        /// <summary>Seconds as the milliseconds the library's options take.</summary>
        internal static string Milliseconds(int seconds)
        {
            return (seconds * 1000L).ToString(CultureInfo.InvariantCulture);
        }

        /// <summary>The library's "wait_timeout_ms = N" as the -Timeout the command was given.</summary>
        internal static string RewordTimeout(string message, int timeout)
        {
            string parameter = "-Timeout " + timeout.ToString(CultureInfo.InvariantCulture) + " s";
            return message.Replace("wait_timeout_ms = " + Milliseconds(timeout), parameter)
                .Replace("time limit (wait_timeout_ms)", "time limit (" + parameter + ")");
        }

        /// <summary>The library's advice to wait for a live response session, as the parameter that does it.</summary>
        internal static string RewordWaitForSession(string message)
        {
            return message.Replace("set the option wait_timeout_ms to wait for a session", "add -Wait to wait for a session");
        }

        /// <summary>
        /// The library's advice for a file another download is saving, as the parameter that
        /// waits for it (-Wait, up to -Timeout).
        /// </summary>
        internal static string RewordWaitForOther(string message)
        {
            return message.Replace("set the option wait_timeout_ms to wait for it", "add -Wait to wait for it (up to -Timeout)");
        }

        /// <summary>The library's advice for an existing file, as the parameter that does it.</summary>
        internal static string RewordOverwrite(string message)
        {
            return message.Replace("set the option 'overwrite' to 'true' to replace it", "add -Force to replace it");
        }

        /// <summary>The library's name of the option file_name_pattern as the parameter that set it.</summary>
        internal static string RewordFileNamePattern(string message)
        {
            return message.Replace("option 'file_name_pattern'", "-FileNamePattern");
        }
    }
}
