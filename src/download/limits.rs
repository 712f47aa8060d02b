//! What ends a download that a server would have go on for ever, or fill the disk: a minimum
//! speed (fewer than `min_speed_bytes` in `min_speed_window_ms` is a stall, retried as one), a
//! ceiling for a body without a length (`max_bytes_without_length`), an optional deadline for
//! the whole download (`download_timeout_ms`), and the free space of the destination's file
//! system, compared with the length the server announces before any byte is written. The
//! transfer consults these; the numbers are the options', in `config.rs`.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::config::Settings;
use crate::error::{DefenderStatus, Error, Result};

/// The minimum speed: windows of `window` one after the other from the start of a body, each of
/// which must bring `min_bytes`.
pub(super) struct Pace {
    min_bytes: u64,
    window: Duration,
    window_ends: Instant,
    in_window: u64,
}

impl Pace {
    /// The rule for a body that starts now.
    pub(super) fn new(settings: &Settings) -> Self {
        let window = settings.min_speed_window;
        Self { min_bytes: settings.min_speed_bytes, window, window_ends: crate::config::after(window), in_window: 0 }
    }

    /// The body's next chunk, or a `TIMEOUT` error when a window ends with fewer bytes than the
    /// minimum: the transfer treats it as a stall.
    pub(super) async fn next<S, T, E>(&mut self, body: &mut S) -> Result<Option<std::result::Result<T, E>>>
    where
        S: Stream<Item = std::result::Result<T, E>> + Unpin,
        T: AsRef<[u8]>,
    {
        if self.min_bytes == 0 {
            return Ok(body.next().await);
        }
        loop {
            match tokio::time::timeout_at(self.window_ends, body.next()).await {
                Ok(item) => {
                    if let Some(Ok(chunk)) = &item {
                        self.in_window += chunk.as_ref().len() as u64;
                    }
                    self.check()?;
                    return Ok(item);
                }
                Err(_) => self.check()?,
            }
        }
    }

    /// Closes the windows that have ended: each must have brought the minimum.
    fn check(&mut self) -> Result<()> {
        while Instant::now() >= self.window_ends {
            if self.in_window < self.min_bytes {
                return Err(Error::new(
                    DefenderStatus::Timeout,
                    format!(
                        "{} bytes came in {} ms, fewer than the {} the options min_speed_bytes and \
                         min_speed_window_ms ask for",
                        self.in_window,
                        self.window.as_millis(),
                        self.min_bytes
                    ),
                ));
            }
            self.in_window = 0;
            self.window_ends += self.window;
        }
        Ok(())
    }
}

/// Whether an attempt the minimum speed broke off, after it brought `delivered` bytes, went
/// anywhere: one that did not bring a window's worth is no progress, so that a trickle runs out
/// of retries.
pub(super) fn made_progress(settings: &Settings, delivered: u64) -> bool {
    delivered > 0 && delivered >= settings.min_speed_bytes
}

/// A body without a length may not grow past `max_bytes_without_length`.
pub(super) fn check_unannounced(settings: &Settings, received: u64) -> Result<()> {
    let ceiling = settings.max_bytes_without_length;
    if received > ceiling {
        return Err(Error::protocol(format!(
            "the download host announced no length and sent more than {ceiling} bytes (the option \
             max_bytes_without_length); no package is that large"
        )));
    }
    Ok(())
}

/// A download of `length` bytes fits in the free space of the file system of `part` (the part
/// file, just emptied): `IO` naming both numbers when it does not. When the system cannot say
/// (an unusual file system), the download goes on and a full disk ends it with `IO`.
pub(super) fn check_room(part: &Path, length: u64) -> Result<()> {
    let Ok(free) = fs4::available_space(part) else { return Ok(()) };
    if length > free {
        let folder = part.parent().unwrap_or(part);
        return Err(Error::new(
            DefenderStatus::Io,
            format!(
                "the package is {length} bytes, but the file system of '{}' has {free} bytes free; free some \
                 space or choose another destination",
                folder.display()
            ),
        ));
    }
    Ok(())
}

/// `download` (`what` says which), ended with `TIMEOUT` when it takes longer than
/// `download_timeout_ms` (when set).
pub(super) async fn within_deadline<T>(
    settings: &Settings,
    what: &str,
    download: impl Future<Output = Result<T>>,
) -> Result<T> {
    let Some(limit) = settings.download_timeout else { return download.await };
    tokio::time::timeout(limit, download).await.unwrap_or_else(|_| {
        Err(Error::new(
            DefenderStatus::Timeout,
            format!(
                "{what}: not done within {} ms (the option download_timeout_ms); raise it, or set 0 for no limit",
                limit.as_millis()
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(min_bytes: u64, window_ms: u64) -> Pace {
        let settings = Settings {
            min_speed_bytes: min_bytes,
            min_speed_window: Duration::from_millis(window_ms),
            ..Settings::default()
        };
        Pace::new(&settings)
    }

    /// A body of `chunks`, each `(after how long, how many bytes)`.
    fn body(chunks: &[(u64, usize)]) -> impl Stream<Item = std::result::Result<Vec<u8>, ()>> + Unpin {
        let chunks: Vec<(u64, usize)> = chunks.to_vec();
        Box::pin(futures_util::stream::iter(chunks).then(|(ms, bytes)| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(vec![0; bytes])
        }))
    }

    async fn drain(mut pace: Pace, chunks: &[(u64, usize)]) -> Result<u64> {
        let mut body = body(chunks);
        let mut total = 0;
        while let Some(chunk) = pace.next(&mut body).await? {
            total += chunk.unwrap().len() as u64;
        }
        Ok(total)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_body_at_the_minimum_goes_on_and_one_below_it_is_a_stall() {
        // 100 bytes every 500 ms: 200 a second, the minimum.
        assert_eq!(drain(pace(200, 1000), &[(500, 100); 10]).await.unwrap(), 1000);
        let started = Instant::now();
        let slow = drain(pace(200, 1000), &[(600, 100); 10]).await.unwrap_err();
        assert_eq!(slow.status(), DefenderStatus::Timeout);
        assert!(slow.message().contains("fewer than the 200"), "{slow}");
        assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn silence_ends_at_the_window_not_at_the_next_byte() {
        let started = Instant::now();
        let err = drain(pace(1, 1000), &[(0, 10), (60_000, 10)]).await.unwrap_err();
        assert_eq!(err.status(), DefenderStatus::Timeout);
        assert_eq!(started.elapsed(), Duration::from_millis(2000), "the second window, with nothing in it");
        assert_eq!(drain(pace(0, 1000), &[(0, 10), (60_000, 10)]).await.unwrap(), 20, "0: no minimum");
    }

    #[test]
    fn an_attempt_below_a_window_s_worth_is_no_progress() {
        let settings = Settings { min_speed_bytes: 1000, ..Settings::default() };
        assert!(!made_progress(&settings, 0) && !made_progress(&settings, 999));
        assert!(made_progress(&settings, 1000));
        let no_minimum = Settings { min_speed_bytes: 0, ..Settings::default() };
        assert!(!made_progress(&no_minimum, 0) && made_progress(&no_minimum, 1));
    }

    #[test]
    fn a_length_beyond_the_free_space_is_io_naming_both() {
        let folder = tempfile::tempdir().unwrap();
        let part = folder.path().join("p.part");
        std::fs::write(&part, b"").unwrap();
        assert!(check_room(&part, 1).is_ok());
        let err = check_room(&part, u64::MAX).unwrap_err();
        assert_eq!(err.status(), DefenderStatus::Io);
        assert!(err.message().contains(&format!("is {} bytes", u64::MAX)), "{err}");
        let said: u64 =
            err.message().split("has ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap().parse().unwrap();
        let free = fs4::available_space(&part).unwrap();
        assert!(said.abs_diff(free) < 1 << 30, "{said} bytes free, said; {free} now");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_deadline_ends_a_download_that_goes_on() {
        let settings = Settings { download_timeout: Some(Duration::from_secs(5)), ..Settings::default() };
        let endless = within_deadline(&settings, "downloading", std::future::pending::<Result<()>>()).await;
        let endless = endless.unwrap_err();
        assert_eq!(endless.status(), DefenderStatus::Timeout);
        assert_eq!(
            endless.message(),
            "downloading: not done within 5000 ms (the option download_timeout_ms); raise it, or set 0 for no limit"
        );
        assert!(within_deadline(&Settings::default(), "downloading", async { Ok(()) }).await.is_ok());
    }
}
