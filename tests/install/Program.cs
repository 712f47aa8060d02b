// The Program.cs of a fresh `dotnet new console` that added the Defender.Interop package from
// dist/ (tests/install/Install.Tests.ps1 builds and runs it): it downloads one package from a
// simulator with nothing but the package, no path to the native library and no
// DefenderLibrary.Load, and prints what the test checks as one JSON object.
//
// Arguments: <base url> <tenant id> <client id> <action id> <folder>; the client secret in
// DEFENDER_TEST_CLIENT_SECRET.
using System.Diagnostics;
using System.Text.Json;
using Defender;

if (args.Length != 5)
{
    Console.Error.WriteLine("usage: <base url> <tenant id> <client id> <action id> <folder>");
    return 2;
}

using var client = new DefenderClient();
client.Set("base_url", args[0]);
client.Set("authority_url", args[0]);
client.Set("tenant_id", args[1]);
client.Set("client_id", args[2]);
client.Set("client_secret", Environment.GetEnvironmentVariable("DEFENDER_TEST_CLIENT_SECRET"));
client.Set("rate_limit", "off");
DownloadedPackage package = client.DownloadPackage(args[3], args[4], null);

// Where the runtime found the native library by itself.
string native = Process.GetCurrentProcess().Modules.Cast<ProcessModule>()
    .Select(module => module.FileName)
    .FirstOrDefault(path => Path.GetFileName(path) == DefenderLibrary.FileName);

Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, string?>
{
    ["path"] = package.Path,
    ["sha256"] = package.Sha256,
    ["library_version"] = DefenderLibrary.Version,
    ["loaded_by_load_call"] = DefenderLibrary.LoadedPath,
    ["native_library"] = native,
}));
return 0;
