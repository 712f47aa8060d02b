// What the objects in a command's pipeline are, so that each binds by what it is rather than by
// a property that happens to be called Id: a device piped to Wait-DefenderMachineAction means its
// latest collection, not an action whose id is the device's.
//
// Every command that takes devices or machine actions from the pipeline has one pipeline
// parameter, -InputObject, and classifies each object here:
//
// - the module's own objects by their type name (also as Deserialized.* from a job or a remote
//   session): DefenderPackage.Machine is a device; DefenderPackage.MachineAction,
//   DefenderPackage.InvestigationPackage, DefenderPackage.PackageUri and the live response results
//   (DefenderPackage.LiveResponseFile, DefenderPackage.LiveResponseScriptResult) are machine actions; a
//   DefenderTarget (an error record's TargetObject) is what it names;
// - other objects (Import-Csv, ConvertFrom-Json) by their distinct properties: ActionId is an
//   action; type, status and machineId an action; machineTags, osPlatform, healthStatus or
//   lastSeen a device; MachineId alone a device; Id alone what the command takes;
// - strings (and anything else) as the id or name the command takes.
//
// The result is a DefenderTarget: the action and the device as far as they are known, which
// names them in results, progress bars, messages and error records.

using System;
using System.Globalization;
using System.Management.Automation;
using System.Text;

namespace Defender.PowerShell
{
    /// <summary>
    /// A machine action and its device, or a device, as far as they are known: the TargetObject of
    /// the module's error records, and what a command's pipeline objects come down to. Piping it
    /// back (from $errors.TargetObject) retries what failed.
    /// </summary>
    public sealed class DefenderTarget
    {
        public DefenderTarget(string actionId, string machineId, string computerDnsName)
        {
            ActionId = Blank(actionId);
            MachineId = Blank(machineId);
            ComputerDnsName = Blank(computerDnsName);
        }

        /// <summary>The machine action's id; null for a device.</summary>
        public string ActionId { get; private set; }

        /// <summary>The device's id (40 hexadecimal characters), when known.</summary>
        public string MachineId { get; private set; }

        /// <summary>The device's name, when known.</summary>
        public string ComputerDnsName { get; private set; }

        internal bool IsAction
        {
            get { return ActionId != null; }
        }

        internal bool KnowsDevice
        {
            get { return MachineId != null || ComputerDnsName != null; }
        }

        /// <summary>"ws-0001.contoso.test (5eed...01)", the name or the id alone, or null.</summary>
        public string Device
        {
            get
            {
                if (ComputerDnsName != null && MachineId != null) return ComputerDnsName + " (" + MachineId + ")";
                return ComputerDnsName ?? MachineId;
            }
        }

        /// <summary>"machine action 1bf5... on ws-0001.contoso.test (5eed...01)", or "device ...".</summary>
        public override string ToString()
        {
            if (!IsAction) return "device " + (Device ?? "(unknown)");
            return "machine action " + ActionId + (KnowsDevice ? " on " + Device : "");
        }

        /// <summary>This target with the device of <paramref name="item"/> (a MachineAction or Machine object) where this one has none.</summary>
        internal DefenderTarget WithDeviceOf(PSObject item, bool isMachine)
        {
            if (item == null) return this;
            string machineId = Text(item, isMachine ? "id" : "machineId");
            string name = Text(item, "computerDnsName");
            return new DefenderTarget(ActionId, MachineId ?? machineId, ComputerDnsName ?? name);
        }

        /// <summary>This target with the device <paramref name="machineId"/>, <paramref name="name"/> where it has none.</summary>
        internal DefenderTarget WithDevice(string machineId, string name)
        {
            return new DefenderTarget(ActionId, MachineId ?? machineId, ComputerDnsName ?? name);
        }

        /// <summary>The action <paramref name="actionId"/> on this target's device.</summary>
        internal DefenderTarget ForAction(string actionId)
        {
            return new DefenderTarget(actionId, MachineId, ComputerDnsName);
        }

        static string Blank(string text)
        {
            return string.IsNullOrEmpty(text) ? null : text;
        }

        /// <summary>A property's value as text, or null (property names ignore case).</summary>
        internal static string Text(PSObject item, string property)
        {
            PSPropertyInfo value = item.Properties[property];
            return value == null || value.Value == null ? null : Blank(Convert.ToString(value.Value, CultureInfo.InvariantCulture));
        }
    }

    /// <summary>What a string in a command's pipeline (or its -Id) is.</summary>
    enum InputKind
    {
        /// <summary>A machine action id.</summary>
        Action,
        /// <summary>A device id, or a computer name.</summary>
        Device,
    }

    static class PipelineInput
    {
        internal const string MachineType = "DefenderPackage.Machine";
        internal const string MachineActionType = "DefenderPackage.MachineAction";
        internal const string InvestigationPackageType = "DefenderPackage.InvestigationPackage";
        internal const string PackageUriType = "DefenderPackage.PackageUri";
        internal const string LiveResponseFileType = "DefenderPackage.LiveResponseFile";
        internal const string LiveResponseScriptResultType = "DefenderPackage.LiveResponseScriptResult";
        internal const string LibraryFileType = "DefenderPackage.LibraryFile";

        /// <summary>
        /// What <paramref name="input"/> is (see the top of this file); null, with
        /// <paramref name="problem"/> saying why, for an object that names nothing.
        /// </summary>
        internal static DefenderTarget Classify(object input, InputKind strings, out string problem)
        {
            problem = null;
            object value = input is PSObject ? ((PSObject)input).BaseObject : input;
            DefenderTarget target = value as DefenderTarget;
            if (target != null) return target;
            if (value == null)
            {
                problem = "a null value names no device or machine action";
                return null;
            }
            if (value is string || value.GetType().IsPrimitive || value is Guid)
                return FromText(Convert.ToString(value, CultureInfo.InvariantCulture), strings, out problem);
            System.Collections.IDictionary dictionary = value as System.Collections.IDictionary;
            if (dictionary != null)
            {
                // A hashtable's keys are not properties of its PSObject: make them so.
                PSObject entries = new PSObject();
                foreach (System.Collections.DictionaryEntry entry in dictionary)
                    entries.Properties.Add(new PSNoteProperty(Convert.ToString(entry.Key, CultureInfo.InvariantCulture), entry.Value));
                return ByProperties(entries, strings, out problem);
            }
            return ByTypeName(PSObject.AsPSObject(input), strings, out problem);
        }

        /// <summary>A string: the id (or name) the command takes.</summary>
        internal static DefenderTarget FromText(string text, InputKind strings, out string problem)
        {
            problem = null;
            if (string.IsNullOrWhiteSpace(text))
            {
                problem = "an empty string names no device or machine action";
                return null;
            }
            text = text.Trim();
            if (strings == InputKind.Action) return new DefenderTarget(text, null, null);
            return IsMachineId(text) ? new DefenderTarget(null, text, null) : new DefenderTarget(null, null, text);
        }

        /// <summary>A device id: 40 hexadecimal characters.</summary>
        internal static bool IsMachineId(string text)
        {
            if (text == null || text.Length != 40) return false;
            foreach (char c in text)
                if (!Uri.IsHexDigit(c)) return false;
            return true;
        }

        static DefenderTarget ByTypeName(PSObject item, InputKind strings, out string problem)
        {
            problem = null;
            foreach (string typeName in item.TypeNames)
            {
                string name = typeName.StartsWith("Deserialized.", StringComparison.Ordinal) ? typeName.Substring("Deserialized.".Length) : typeName;
                switch (name)
                {
                    case MachineType:
                        return new DefenderTarget(null, DefenderTarget.Text(item, "id"), DefenderTarget.Text(item, "computerDnsName"));
                    case MachineActionType:
                        return new DefenderTarget(DefenderTarget.Text(item, "id"), DefenderTarget.Text(item, "machineId"),
                            DefenderTarget.Text(item, "computerDnsName"));
                    case InvestigationPackageType:
                    case PackageUriType:
                    case LiveResponseFileType:
                    case LiveResponseScriptResultType:
                        return new DefenderTarget(DefenderTarget.Text(item, "ActionId"), DefenderTarget.Text(item, "MachineId"),
                            DefenderTarget.Text(item, "ComputerDnsName"));
                }
            }
            return ByProperties(item, strings, out problem);
        }

        // An object of another tool: by the properties that tell a device from an action.
        static DefenderTarget ByProperties(PSObject item, InputKind strings, out string problem)
        {
            problem = null;
            Func<string, string> text = delegate(string property) { return DefenderTarget.Text(item, property); };
            Func<string, bool> has = delegate(string property) { return item.Properties[property] != null; };
            string name = text("computerDnsName");
            if (text("ActionId") != null) return new DefenderTarget(text("ActionId"), text("MachineId"), name);
            if (has("type") && has("status") && has("machineId") && text("Id") != null)
                return new DefenderTarget(text("Id"), text("machineId"), name);
            if ((has("machineTags") || has("osPlatform") || has("healthStatus") || has("lastSeen")) && (text("Id") != null || name != null))
                return new DefenderTarget(null, text("Id"), name);
            if (text("MachineId") != null) return new DefenderTarget(null, text("MachineId"), name);
            if (text("Id") != null) return FromText(text("Id"), strings, out problem).WithDevice(null, name);
            if (strings == InputKind.Device && (name ?? text("ComputerName")) != null) return new DefenderTarget(null, null, name ?? text("ComputerName"));
            problem = "the object has no ActionId, MachineId or Id property, and is not one of the module's devices or machine actions";
            return null;
        }

        /// <summary>"'x'" with control characters escaped, for messages about what the user gave.</summary>
        internal static string Quote(string text)
        {
            StringBuilder shown = new StringBuilder("'");
            foreach (char c in text ?? "")
                shown.Append(char.IsControl(c) ? "\\u" + ((int)c).ToString("x4", CultureInfo.InvariantCulture) : c.ToString());
            return shown.Append('\'').ToString();
        }
    }
}
