using System;
using System.Diagnostics;
using System.IO;
using System.Text.RegularExpressions;
using Xunit;

namespace Defender.Interop.Tests;

/// <summary>
/// A simulator that keeps its live response results in Azurite (the Azure Storage emulator;
/// --blob-endpoint) and hands out the emulator's SAS links, with three sample devices. Azurite is
/// the one tests/run-all.sh started ($DEFENDER_AZURITE_BLOB_ENDPOINT), else one started here on a
/// loopback port with in-memory persistence from the npm package run-all.sh installs (the
/// azurite-blob of $DEFENDER_AZURITE, else of the tools cache), as tests/common/azurite.rs does.
/// </summary>
public sealed class LiveResponseSimulator : Simulator
{
    readonly Process azurite; // null: run-all.sh's

    public LiveResponseSimulator()
        : this(StartAzurite())
    {
    }

    LiveResponseSimulator((Process Process, string Account) azurite)
        : base(new[] { "--blob-endpoint", azurite.Account, "--seed-machines", "3" })
    {
        this.azurite = azurite.Process;
        BlobAccount = azurite.Account;
    }

    /// <summary>Azurite's storage account: http://127.0.0.1:port/devstoreaccount1.</summary>
    public string BlobAccount { get; }

    public override void Dispose()
    {
        base.Dispose();
        if (azurite == null) return;
        if (!azurite.HasExited)
        {
            azurite.Kill();
            azurite.WaitForExit();
        }
        azurite.Dispose();
    }

    /// <summary>Azurite's blob service on a free port, and its account's URL.</summary>
    static (Process, string) StartAzurite()
    {
        if (Environment.GetEnvironmentVariable("DEFENDER_AZURITE_BLOB_ENDPOINT") is { Length: > 0 } running)
            return (null, running);
        string executable = Environment.GetEnvironmentVariable("DEFENDER_AZURITE") is { Length: > 0 } given
            ? given
            : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } cache
                    ? cache
                    : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"),
                "defender-package", "tools", "azurite", "node_modules", ".bin", "azurite-blob");
        if (!File.Exists(executable))
            throw new InvalidOperationException($"Azurite is not at {executable}: tests/run-all.sh installs it (npm), or set DEFENDER_AZURITE to its azurite-blob");
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
            ArgumentList = { "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence", "--skipApiVersionCheck", "--loose" },
            WorkingDirectory = Path.GetTempPath(),
        };
        Process process = Process.Start(start)!;
        for (string line; (line = process.StandardOutput.ReadLine()) != null;)
        {
            Match listening = Regex.Match(line, @"listens on (http://\S+)");
            if (!listening.Success) continue;
            // Its further output is not read: drain it so that it never blocks on a full pipe.
            _ = process.StandardOutput.BaseStream.CopyToAsync(Stream.Null);
            return (process, listening.Groups[1].Value.TrimEnd('/') + "/devstoreaccount1");
        }
        throw new InvalidOperationException("Azurite exited without saying where it listens");
    }
}

[CollectionDefinition(Name)]
public sealed class LiveResponseCollection : ICollectionFixture<LiveResponseSimulator>
{
    public const string Name = "live response";
}
