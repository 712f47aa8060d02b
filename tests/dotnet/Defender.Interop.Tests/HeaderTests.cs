using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Defender;
using Xunit;

namespace Defender.Interop.Tests;

/// <summary>
/// The binding's copies of the header's enums (DefenderStatus, DefenderPhase, DefenderLogLevel)
/// against include/defender.h itself: a member missing, added, renamed or renumbered fails here.
/// </summary>
[Collection(SimulatorCollection.Name)]
public sealed class HeaderTests
{
    public HeaderTests(Simulator simulator) => _ = simulator; // loads the library for StatusName

    [Theory]
    [InlineData(typeof(DefenderStatus), "DEFENDER_STATUS_")]
    [InlineData(typeof(DefenderPhase), "DEFENDER_PHASE_")]
    [InlineData(typeof(DefenderLogLevel), "DEFENDER_LOG_LEVEL_")]
    public void Each_enum_has_the_headers_members_with_their_numbers(Type binding, string prefix)
    {
        string header = File.ReadAllText(Path.Combine(Simulator.RepositoryRoot(), "include", "defender.h"));
        var inHeader = Regex.Matches(header, "^\\s*" + prefix + "([A-Z0-9_]+) = (-?[0-9]+),?\\s*$", RegexOptions.Multiline)
            .Select(match => match.Groups[1].Value + " = " + match.Groups[2].Value)
            .Order();
        var inBinding = Enum.GetValues(binding).Cast<object>()
            .Select(member => ScreamingSnake(member.ToString()) + " = " + Convert.ToInt32(member))
            .Order();

        Assert.NotEmpty(inHeader);
        Assert.Equal(inHeader, inBinding);
    }

    [Fact]
    public void The_library_names_each_status_as_the_binding_spells_it()
    {
        foreach (DefenderStatus status in Enum.GetValues<DefenderStatus>())
        {
            Assert.Equal(ScreamingSnake(status.ToString()), DefenderClient.StatusName(status));
            Assert.Equal(DefenderClient.StatusName(status), new DefenderException(status, "x").StatusName);
        }
        Assert.Equal("UNKNOWN", DefenderClient.StatusName((DefenderStatus)17));
    }

    /// <summary>UnknownOption as the header spells it: UNKNOWN_OPTION.</summary>
    static string ScreamingSnake(string pascal) => Regex.Replace(pascal, "(?<=[a-z0-9])([A-Z])", "_$1").ToUpperInvariant();
}
