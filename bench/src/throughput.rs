//! Downloads of one large package by the library and by the tools a careful admin would script,
//! alternating, each side timed and its CPU time counted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use defender_native::Client;

/// One side's runs: wall times and CPU seconds (user + system) per run.
#[derive(Default)]
pub struct Runs {
    pub times: Vec<Duration>,
    pub cpu: Vec<f64>,
}

impl Runs {
    /// MiB/s of the median run, and of the slowest and fastest.
    pub fn rates(&self, bytes: u64) -> (f64, f64, f64) {
        let rate = |time: Duration| bytes as f64 / time.as_secs_f64() / crate::MIB;
        let mut sorted = self.times.clone();
        sorted.sort();
        (rate(sorted[sorted.len() / 2]), rate(sorted[sorted.len() - 1]), rate(sorted[0]))
    }

    /// Median CPU seconds per GiB.
    pub fn cpu_per_gib(&self, bytes: u64) -> f64 {
        let mut cpu = self.cpu.clone();
        cpu.sort_by(f64::total_cmp);
        cpu[cpu.len() / 2] / (bytes as f64 / crate::MIB / 1024.0)
    }
}

/// One download through `defender_download_package` into `folder`; the file is removed after.
pub fn library_run(client: &Client, action_id: &str, folder: &Path, size: u64, runs: &mut Runs) -> Result<(), String> {
    let cpu = cpu_seconds(Who::Myself);
    let started = Instant::now();
    let result = client.download(action_id, folder, None).map_err(|failure| failure.to_string())?;
    runs.times.push(started.elapsed());
    runs.cpu.push(cpu_seconds(Who::Myself) - cpu);
    let path = PathBuf::from(result["path"].as_str().unwrap_or_default());
    crate::check_size(&path, size)?;
    crate::remove(&path)
}

/// What the tools do with a fresh link: `curl -o FILE`, or curl piped through `tee FILE` into
/// `sha256sum` (and `md5sum` beside it), then `sync FILE`.
#[derive(Clone, Copy)]
pub enum Tools {
    Curl,
    Pipeline { md5: bool },
}

const PIPELINE: &str = r#"set -eu -o pipefail
url=$1; file=$2; folder=$3; md5=$4
if [ "$md5" = 1 ]; then
  mkfifo "$folder/md5.fifo"
  md5sum < "$folder/md5.fifo" > "$folder/md5.txt" &
  curl --silent --show-error --fail "$url" | tee "$file" "$folder/md5.fifo" | sha256sum > "$folder/sha256.txt"
  wait $!
  rm "$folder/md5.fifo"
else
  curl --silent --show-error --fail "$url" | tee "$file" | sha256sum > "$folder/sha256.txt"
fi
sync "$file"
"#;

/// One download by the tools into `folder`; the file is removed after.
pub fn tools_run(tools: Tools, link: &str, folder: &Path, size: u64, runs: &mut Runs) -> Result<(), String> {
    let file = folder.join("curl.zip");
    let file_arg = file.to_str().ok_or("the work folder's path is not UTF-8")?;
    let mut command = match tools {
        Tools::Curl => {
            let mut curl = Command::new("curl");
            curl.args(["--silent", "--show-error", "--fail", "--output", file_arg, link]);
            curl
        }
        Tools::Pipeline { md5 } => {
            let mut bash = Command::new("bash");
            let folder_arg = folder.to_str().ok_or("the work folder's path is not UTF-8")?;
            bash.args(["-c", PIPELINE, "pipeline", link, file_arg, folder_arg, if md5 { "1" } else { "0" }]);
            bash
        }
    };
    let cpu = cpu_seconds(Who::Children);
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output();
    let elapsed = started.elapsed();
    let output = output.map_err(|err| format!("cannot run curl (are curl and bash installed?): {err}"))?;
    if !output.status.success() {
        return Err(format!("the tools failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    runs.times.push(elapsed);
    runs.cpu.push(cpu_seconds(Who::Children) - cpu);
    crate::check_size(&file, size)?;
    crate::remove(&file)
}

enum Who {
    Myself,
    /// Finished child processes that were waited for.
    Children,
}

/// CPU seconds (user + system) used so far; 0 where the system does not tell.
fn cpu_seconds(who: Who) -> f64 {
    #[cfg(unix)]
    {
        let which = match who {
            Who::Myself => libc::RUSAGE_SELF,
            Who::Children => libc::RUSAGE_CHILDREN,
        };
        // SAFETY: getrusage writes one rusage into the zeroed struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(which, &mut usage) } != 0 {
            return 0.0;
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
    #[cfg(not(unix))]
    {
        let _ = who;
        0.0
    }
}
