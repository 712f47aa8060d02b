//! Progress bars on a terminal: one for the batch ("3 of 12 packages") and one per package
//! under it, saying its phase (waiting for the collection, queued for the rate limit, waiting
//! for a slot, downloading, verifying, retrying) and its bytes. Nothing at all when standard
//! error is not a terminal (cron, pipelines, CI logs).

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct BatchProgress {
    multi: MultiProgress,
    batch: ProgressBar,
    /// One per item, created when its first bytes arrive.
    items: Vec<Option<ProgressBar>>,
    labels: Vec<String>,
    /// What an item's wait is for, in its bar: "collection" (packages), "session" (live response).
    pub awaited: &'static str,
}

impl BatchProgress {
    /// Bars for `labels.len()` packages (each labelled, e.g. by its action id).
    pub fn new(labels: Vec<String>) -> BatchProgress {
        BatchProgress::of("packages", "collection", labels)
    }

    /// Bars for `labels.len()` items of a kind (`"packages"`, `"files"`), each labelled, whose
    /// waits are for `awaited` (`"collection"`, `"session"`).
    pub fn of(noun: &str, awaited: &'static str, labels: Vec<String>) -> BatchProgress {
        let target =
            if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let batch = multi.add(ProgressBar::new(labels.len() as u64));
        batch.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {{pos}} of {{len}} {noun} [{{elapsed_precise}}] {{wide_msg}}"
            ))
            .expect("a valid template"),
        );
        batch.enable_steady_tick(std::time::Duration::from_millis(200));
        BatchProgress { multi, batch, items: vec![None; labels.len()], labels, awaited }
    }

    /// Bytes of item `index` so far (`total` 0 while unknown).
    pub fn bytes(&mut self, index: usize, done: u64, total: u64) {
        let Some(bar) = self.item(index) else { return };
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
    }

    /// What item `index` is doing: waiting for its collection, queued, downloading, ...
    pub fn phase(&mut self, index: usize, text: &str) {
        if let Some(bar) = self.item(index) {
            bar.set_message(text.to_owned());
        }
    }

    /// Item `index`'s bar, created on first use.
    fn item(&mut self, index: usize) -> Option<&ProgressBar> {
        let label = short(self.labels.get(index)?);
        let multi = &self.multi;
        Some(self.items.get_mut(index)?.get_or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "  {prefix:38} {msg:30} {bar:24} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
                )
                .expect("a valid template"),
            );
            bar.set_prefix(label);
            bar
        }))
    }

    /// Item `index` is finished: its bar goes, the batch's moves on, and `line` (if any) is
    /// printed above the bars.
    pub fn done(&mut self, index: usize, line: Option<&str>) {
        if let Some(bar) = self.items.get_mut(index).and_then(Option::take) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.batch.inc(1);
        if let Some(line) = line {
            if self.multi.is_hidden() {
                eprintln!("{line}");
            } else {
                let _ = self.multi.println(line);
            }
        }
    }

    pub fn finish(self) {
        self.batch.finish_and_clear();
        let _ = self.multi.clear();
    }
}

fn short(label: &str) -> String {
    if label.chars().count() <= 38 {
        label.to_owned()
    } else {
        format!("{}…", label.chars().take(37).collect::<String>())
    }
}
