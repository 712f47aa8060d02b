//! Which endpoint a request is for. Paths match as the real services match them: fixed segments
//! ignore ASCII case (the documentation spells `getPackageUri` both ways), ids are
//! percent-decoded single segments.

use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::request_log::Port;
use crate::responses::ErrorStyle;

/// The endpoints fault rules and the request log name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// `POST /{tenant}/oauth2/v2.0/token`
    Token,
    /// `GET /metadata/identity/oauth2/token`
    Imds,
    /// `GET /msi/token`
    AppServiceIdentity,
    /// `POST /api/machines/{id}/collectInvestigationPackage`
    Collect,
    /// `GET /api/machines`
    ListMachines,
    /// `GET /api/machines/{id}`
    Machine,
    /// `GET /api/machineactions`
    ListActions,
    /// `GET /api/machineactions/{id}`
    MachineAction,
    /// `GET /api/machineactions/{id}/getPackageUri`
    GetPackageUri,
    /// `POST /api/machineactions/{id}/cancel`
    CancelAction,
    /// `GET`/`HEAD /safedownload/{name}.zip` on the download host
    Download,
    /// `POST /api/machines/{id}/runliveresponse`
    RunLiveResponse,
    /// `GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=N)`
    LiveResponseResultLink,
    /// `GET /api/libraryfiles`
    ListLibraryFiles,
    /// `POST /api/libraryfiles` (multipart/form-data)
    UploadLibraryFile,
    /// `DELETE /api/libraryfiles/{fileName}`
    DeleteLibraryFile,
}

impl RouteKind {
    /// The shape of this endpoint's error bodies.
    pub(crate) fn error_style(self) -> ErrorStyle {
        match self {
            RouteKind::Token => ErrorStyle::SignIn,
            RouteKind::Imds | RouteKind::AppServiceIdentity => ErrorStyle::ManagedIdentity,
            RouteKind::Collect
            | RouteKind::ListMachines
            | RouteKind::Machine
            | RouteKind::ListActions
            | RouteKind::MachineAction
            | RouteKind::GetPackageUri
            | RouteKind::CancelAction
            | RouteKind::RunLiveResponse
            | RouteKind::LiveResponseResultLink
            | RouteKind::ListLibraryFiles
            | RouteKind::UploadLibraryFile
            | RouteKind::DeleteLibraryFile => ErrorStyle::Api,
            RouteKind::Download => ErrorStyle::Storage,
        }
    }
}

pub(crate) enum Route {
    Token { tenant: String },
    Imds,
    AppServiceIdentity,
    Api(ApiCall),
    Download,
}

pub(crate) enum ApiCall {
    Collect {
        machine_id: String,
    },
    ListMachines,
    Machine {
        machine_id: String,
    },
    ListActions,
    MachineAction {
        action_id: String,
    },
    GetPackageUri {
        action_id: String,
    },
    CancelAction {
        action_id: String,
    },
    RunLiveResponse {
        machine_id: String,
    },
    /// `index` is `None` when the segment's `(index=N)` is not a number.
    LiveResponseResultLink {
        action_id: String,
        index: Option<usize>,
    },
    ListLibraryFiles,
    UploadLibraryFile,
    DeleteLibraryFile {
        file_name: String,
    },
}

impl Route {
    pub(crate) fn kind(&self) -> RouteKind {
        match self {
            Route::Token { .. } => RouteKind::Token,
            Route::Imds => RouteKind::Imds,
            Route::AppServiceIdentity => RouteKind::AppServiceIdentity,
            Route::Api(ApiCall::Collect { .. }) => RouteKind::Collect,
            Route::Api(ApiCall::ListMachines) => RouteKind::ListMachines,
            Route::Api(ApiCall::Machine { .. }) => RouteKind::Machine,
            Route::Api(ApiCall::ListActions) => RouteKind::ListActions,
            Route::Api(ApiCall::CancelAction { .. }) => RouteKind::CancelAction,
            Route::Api(ApiCall::MachineAction { .. }) => RouteKind::MachineAction,
            Route::Api(ApiCall::GetPackageUri { .. }) => RouteKind::GetPackageUri,
            Route::Api(ApiCall::RunLiveResponse { .. }) => RouteKind::RunLiveResponse,
            Route::Api(ApiCall::LiveResponseResultLink { .. }) => RouteKind::LiveResponseResultLink,
            Route::Api(ApiCall::ListLibraryFiles) => RouteKind::ListLibraryFiles,
            Route::Api(ApiCall::UploadLibraryFile) => RouteKind::UploadLibraryFile,
            Route::Api(ApiCall::DeleteLibraryFile { .. }) => RouteKind::DeleteLibraryFile,
            Route::Download => RouteKind::Download,
        }
    }
}

pub(crate) enum NoRoute {
    NotFound,
    MethodNotAllowed,
}

pub(crate) fn route(port: Port, method: &Method, path: &str) -> Result<Route, NoRoute> {
    let segments: Vec<String> = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|segment| percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is = |segment: &str, expected: &str| segment.eq_ignore_ascii_case(expected);

    let (route, allowed): (Route, &[Method]) = match (port, segments.as_slice()) {
        (Port::Api, [tenant, oauth2, version, token])
            if is(oauth2, "oauth2") && is(version, "v2.0") && is(token, "token") =>
        {
            let tenant = (*tenant).to_owned();
            (Route::Token { tenant }, &[Method::POST])
        }
        (Port::Api, [metadata, identity, oauth2, token])
            if is(metadata, "metadata") && is(identity, "identity") && is(oauth2, "oauth2") && is(token, "token") =>
        {
            (Route::Imds, &[Method::GET])
        }
        (Port::Api, [msi, token]) if is(msi, "msi") && is(token, "token") => {
            (Route::AppServiceIdentity, &[Method::GET])
        }
        (Port::Api, [api, machines, machine_id, collect])
            if is(api, "api") && is(machines, "machines") && is(collect, "collectInvestigationPackage") =>
        {
            let machine_id = (*machine_id).to_owned();
            (Route::Api(ApiCall::Collect { machine_id }), &[Method::POST])
        }
        (Port::Api, [api, machines, machine_id, run])
            if is(api, "api") && is(machines, "machines") && is(run, "runliveresponse") =>
        {
            let machine_id = (*machine_id).to_owned();
            (Route::Api(ApiCall::RunLiveResponse { machine_id }), &[Method::POST])
        }
        (Port::Api, [api, library]) if is(api, "api") && is(library, "libraryfiles") => {
            let call = if *method == Method::POST { ApiCall::UploadLibraryFile } else { ApiCall::ListLibraryFiles };
            (Route::Api(call), &[Method::GET, Method::POST])
        }
        (Port::Api, [api, library, file_name]) if is(api, "api") && is(library, "libraryfiles") => {
            let file_name = (*file_name).to_owned();
            (Route::Api(ApiCall::DeleteLibraryFile { file_name }), &[Method::DELETE])
        }
        (Port::Api, [api, actions, action_id, link])
            if is(api, "api") && is(actions, "machineactions") && result_link_index(link).is_some() =>
        {
            let action_id = (*action_id).to_owned();
            let index = result_link_index(link).flatten();
            (Route::Api(ApiCall::LiveResponseResultLink { action_id, index }), &[Method::GET])
        }
        (Port::Api, [api, machines]) if is(api, "api") && is(machines, "machines") => {
            (Route::Api(ApiCall::ListMachines), &[Method::GET])
        }
        (Port::Api, [api, machines, machine_id]) if is(api, "api") && is(machines, "machines") => {
            let machine_id = (*machine_id).to_owned();
            (Route::Api(ApiCall::Machine { machine_id }), &[Method::GET])
        }
        (Port::Api, [api, actions, action_id, cancel])
            if is(api, "api") && is(actions, "machineactions") && is(cancel, "cancel") =>
        {
            let action_id = (*action_id).to_owned();
            (Route::Api(ApiCall::CancelAction { action_id }), &[Method::POST])
        }
        (Port::Api, [api, actions]) if is(api, "api") && is(actions, "machineactions") => {
            (Route::Api(ApiCall::ListActions), &[Method::GET])
        }
        (Port::Api, [api, actions, action_id]) if is(api, "api") && is(actions, "machineactions") => {
            let action_id = (*action_id).to_owned();
            (Route::Api(ApiCall::MachineAction { action_id }), &[Method::GET])
        }
        (Port::Api, [api, actions, action_id, get_package_uri])
            if is(api, "api") && is(actions, "machineactions") && is(get_package_uri, "getPackageUri") =>
        {
            let action_id = (*action_id).to_owned();
            (Route::Api(ApiCall::GetPackageUri { action_id }), &[Method::GET])
        }
        (Port::Download, [safedownload, name]) if is(safedownload, "safedownload") && name.ends_with(".zip") => {
            (Route::Download, &[Method::GET, Method::HEAD])
        }
        _ => return Err(NoRoute::NotFound),
    };
    if allowed.contains(method) { Ok(route) } else { Err(NoRoute::MethodNotAllowed) }
}

/// `GetLiveResponseResultDownloadLink(index=N)`: `Some(Some(N))`, `Some(None)` when N is not a
/// number, `None` for another segment.
fn result_link_index(segment: &str) -> Option<Option<usize>> {
    const NAME: &str = "GetLiveResponseResultDownloadLink(index=";
    let head = segment.get(..NAME.len())?;
    if !head.eq_ignore_ascii_case(NAME) || !segment.ends_with(')') {
        return None;
    }
    Some(segment[NAME.len()..segment.len() - 1].trim().parse().ok())
}
