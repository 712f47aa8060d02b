// Connect-DefenderApi's -Option: the library's options that no parameter sets, as key = value.
//
// It is typed, not a bare hashtable, for one reason: PowerShell 7.4 and later complete the keys
// of a hashtable literal (-Option @{ ti<Tab>) from the settable properties of the parameter's
// type, and from nothing else (a completer is not asked inside @{ }). So each key is a property
// here, which the Pester suite checks against the library's option table (one property per key
// -Option takes, no other). PowerShell converts a hashtable to it through the IDictionary
// constructor, which keeps every key as given, a misspelt one too, for Connect-DefenderApi to
// refuse with the list of keys (Defender.UnknownOption), and every value as given ($true, 30000).
// Windows PowerShell 5.1 has no such completion; -Option ti<Tab> completes there too.

using System;
using System.Collections;
using System.Collections.Generic;

namespace Defender.PowerShell
{
    /// <summary>The -Option of Connect-DefenderApi: the library's options by key (see the library's option table).</summary>
    public sealed class ConnectionOptions
    {
        readonly Dictionary<string, object> values = new Dictionary<string, object>(StringComparer.OrdinalIgnoreCase);
        readonly List<string> order = new List<string>();

        public ConnectionOptions()
        {
        }

        /// <summary>Every key of <paramref name="options"/> (a hashtable), as given.</summary>
        public ConnectionOptions(IDictionary options)
        {
            if (options == null) return;
            foreach (DictionaryEntry entry in options) Set(Convert.ToString(entry.Key, System.Globalization.CultureInfo.InvariantCulture), entry.Value);
        }

        /// <summary>The keys given, in the order given.</summary>
        internal IList<string> Keys
        {
            get { return order.AsReadOnly(); }
        }

        internal object this[string key]
        {
            get
            {
                object value;
                return values.TryGetValue(key, out value) ? value : null;
            }
        }

        void Set(string key, object value)
        {
            if (!values.ContainsKey(key)) order.Add(key);
            values[key] = value;
        }

        object Get(string key)
        {
            return this[key];
        }

        // One property per key -Option takes (the library's keys but those a parameter sets). The
        // names are the library's, so that completion offers exactly what the library reads.
        public object authority_url { get { return Get("authority_url"); } set { Set("authority_url", value); } }
        public object scope { get { return Get("scope"); } set { Set("scope", value); } }
        public object managed_identity_endpoint { get { return Get("managed_identity_endpoint"); } set { Set("managed_identity_endpoint", value); } }
        public object timeout_ms { get { return Get("timeout_ms"); } set { Set("timeout_ms", value); } }
        public object connect_timeout_ms { get { return Get("connect_timeout_ms"); } set { Set("connect_timeout_ms", value); } }
        public object wait_timeout_ms { get { return Get("wait_timeout_ms"); } set { Set("wait_timeout_ms", value); } }
        public object overwrite { get { return Get("overwrite"); } set { Set("overwrite", value); } }
        public object ca_file { get { return Get("ca_file"); } set { Set("ca_file", value); } }
        public object user_agent { get { return Get("user_agent"); } set { Set("user_agent", value); } }
        public object rate_limit { get { return Get("rate_limit"); } set { Set("rate_limit", value); } }
        public object clock_scale { get { return Get("clock_scale"); } set { Set("clock_scale", value); } }
        public object max_concurrent_downloads { get { return Get("max_concurrent_downloads"); } set { Set("max_concurrent_downloads", value); } }
        public object file_name_pattern { get { return Get("file_name_pattern"); } set { Set("file_name_pattern", value); } }
        public object min_speed_bytes { get { return Get("min_speed_bytes"); } set { Set("min_speed_bytes", value); } }
        public object min_speed_window_ms { get { return Get("min_speed_window_ms"); } set { Set("min_speed_window_ms", value); } }
        public object download_timeout_ms { get { return Get("download_timeout_ms"); } set { Set("download_timeout_ms", value); } }
        public object max_bytes_without_length { get { return Get("max_bytes_without_length"); } set { Set("max_bytes_without_length", value); } }
        public object list_max_items { get { return Get("list_max_items"); } set { Set("list_max_items", value); } }
        public object list_max_pages { get { return Get("list_max_pages"); } set { Set("list_max_pages", value); } }
        public object list_timeout_ms { get { return Get("list_timeout_ms"); } set { Set("list_timeout_ms", value); } }
    }
}
