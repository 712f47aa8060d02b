// Loading the native library when the module is imported: from runtimes/<rid>/native/ beside
// this assembly (how the module is laid out and shipped), or, for a module laid out in a cargo
// target dir by powershell/build.sh, from that target dir's release or debug output (the newer
// one; $env:CARGO_TARGET_DIR overrides where that is).

using System;
using System.IO;
using System.Linq;
using System.Management.Automation;

namespace Defender.PowerShell
{
    /// <summary>
    /// Runs when the module is imported (loads the native library once per process) and when it
    /// is removed (Remove-Module ends the connections its runspace opened, as its help says).
    /// </summary>
    public sealed class ModuleInitializer : IModuleAssemblyInitializer, IModuleAssemblyCleanup
    {
        public void OnImport()
        {
            if (DefenderLibrary.LoadedPath == null) DefenderLibrary.Load(FindNativeLibrary());
        }

        public void OnRemove(PSModuleInfo module)
        {
            System.Management.Automation.Runspaces.Runspace runspace = System.Management.Automation.Runspaces.Runspace.DefaultRunspace;
            if (runspace != null) Connections.EndAllOf(runspace);
        }

        /// <summary>The native library this module loads; a FileNotFoundException naming where it looked.</summary>
        internal static string FindNativeLibrary()
        {
            string fileName = DefenderLibrary.FileName;
            string rid = DefenderLibrary.RuntimeIdentifier;
            string moduleFolder = Path.GetDirectoryName(typeof(ModuleInitializer).Assembly.Location) ?? ".";
            string packaged = Path.Combine(moduleFolder, "runtimes", rid, "native", fileName);
            if (File.Exists(packaged)) return packaged;

            string cargoTarget = Environment.GetEnvironmentVariable("CARGO_TARGET_DIR");
            // powershell/build.sh lays the module out in <target>/powershell/DefenderPackage.
            string targetDirectory = !string.IsNullOrEmpty(cargoTarget)
                ? Path.GetFullPath(cargoTarget)
                : Path.GetDirectoryName(Path.GetDirectoryName(moduleFolder) ?? moduleFolder) ?? moduleFolder;
            string[] built = { Path.Combine(targetDirectory, "release", fileName), Path.Combine(targetDirectory, "debug", fileName) };
            string newest = built.Where(File.Exists).OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault();
            if (newest != null) return newest;

            string lookedIn = string.Join("', '", new[] { packaged }.Concat(built));
            throw new FileNotFoundException(
                "The defender native library (" + fileName + " for " + rid + ") was not found. Looked in '" + lookedIn + "'. " +
                "Put it in the module's runtimes/" + rid + "/native folder, or build it in the source tree with " +
                "'cargo build -p defender' and lay out the module with powershell/build.sh.", packaged);
        }
    }
}
