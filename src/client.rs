//! The client: options, connection pool, cached token and cancellation, shared by every call made
//! with it from any thread. Each call takes a `Session` (a snapshot of these) when it starts.

use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use crate::auth::TokenCache;
use crate::config::{Affects, Settings};
use crate::error::Result;
use crate::http;
use crate::redact::Secret;

pub(crate) struct Client {
    state: RwLock<State>,
    /// Cancelling it stops every call in flight; it is then replaced for later calls.
    cancel: Mutex<CancellationToken>,
}

struct State {
    settings: Arc<Settings>,
    /// Built on first use after the transport options last changed.
    http: Option<http::Pools>,
    tokens: Arc<TokenCache>,
}

/// What one call works with: the options as they were when it started, the connection pool and
/// the token cache.
pub(crate) struct Session {
    pub settings: Arc<Settings>,
    /// For API calls and downloads.
    pub http: reqwest::Client,
    /// For sign-in: follows no redirect.
    pub sign_in_http: reqwest::Client,
    pub tokens: Arc<TokenCache>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub(crate) fn new() -> Self {
        let settings = Settings::default();
        let tokens = Arc::new(TokenCache::new(&settings));
        Self {
            state: RwLock::new(State { settings: Arc::new(settings), http: None, tokens }),
            cancel: Mutex::new(CancellationToken::new()),
        }
    }

    /// Sets one option (see `config::OPTIONS`); `None` restores its default. Calls already running
    /// keep the options they started with.
    pub(crate) fn set(&self, key: &str, value: Option<&str>) -> Result<()> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut settings = Settings::clone(&state.settings);
        match settings.set(key, value)? {
            Affects::SignIn => state.tokens = Arc::new(state.tokens.reconfigured(&settings)),
            Affects::Transport => state.http = None,
            Affects::Behaviour => {}
        }
        state.settings = Arc::new(settings);
        Ok(())
    }

    /// Signs in (or not) with client assertions from the caller's assertion callback.
    pub(crate) fn set_assertion_callback(&self, enabled: bool) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.settings.client_assertion_callback == enabled {
            // Replacing the callback (a clone registering its own) keeps the shared token cache.
            return;
        }
        let mut settings = Settings::clone(&state.settings);
        settings.client_assertion_callback = enabled;
        state.tokens = Arc::new(state.tokens.reconfigured(&settings));
        state.settings = Arc::new(settings);
    }

    /// A client with this one's options as they are now, sharing its token cache and connection
    /// pool (so also its sign-in) and, like every client, the process's rate limiters. Options
    /// set on either later are its own; so is cancellation.
    pub(crate) fn duplicate(&self) -> Client {
        // Built now if it was not yet, so that both use one pool.
        let _ = self.session();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        Client {
            state: RwLock::new(State {
                settings: Arc::clone(&state.settings),
                http: state.http.clone(),
                tokens: Arc::clone(&state.tokens),
            }),
            cancel: Mutex::new(CancellationToken::new()),
        }
    }

    /// Makes every call in flight on this client return `CANCELLED` promptly. Later calls run normally.
    pub(crate) fn cancel(&self) {
        let mut cancel = self.cancel.lock().unwrap_or_else(|e| e.into_inner());
        cancel.cancel();
        *cancel = CancellationToken::new();
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()).settings)
    }

    fn session(&self) -> Result<Arc<Session>> {
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if let Some(pools) = &state.http {
                return Ok(Arc::new(Session {
                    settings: Arc::clone(&state.settings),
                    http: pools.api.clone(),
                    sign_in_http: pools.sign_in.clone(),
                    tokens: Arc::clone(&state.tokens),
                }));
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let pools = match &state.http {
            Some(pools) => pools.clone(),
            None => http::build_clients(&state.settings)?,
        };
        state.http = Some(pools.clone());
        Ok(Arc::new(Session {
            settings: Arc::clone(&state.settings),
            http: pools.api,
            sign_in_http: pools.sign_in,
            tokens: Arc::clone(&state.tokens),
        }))
    }

    /// What a call starting now works with (see `runtime::run`).
    pub(crate) fn start_call(&self) -> Result<CallStart> {
        let session = self.session()?;
        let cancel = self.cancel.lock().unwrap_or_else(|e| e.into_inner()).child_token();
        let secrets = crate::auth::secrets(&session.settings);
        Ok(CallStart { session, cancel, secrets })
    }
}

/// What one call takes from its client when it starts.
pub(crate) struct CallStart {
    pub session: Arc<Session>,
    /// Cancelled with every other call in flight by `Client::cancel`.
    pub cancel: CancellationToken,
    /// What its messages and log lines are scrubbed of.
    pub secrets: Vec<Secret>,
}
