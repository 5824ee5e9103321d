//! `POST /slots/{id}?action=save|restore|erase`, as llama-server's: a slot's cache written to a
//! file under `--slot-save-path` (llama.cpp's sequence state file, which llama-server reads too),
//! read back into a slot, or emptied. Done once the slot is idle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as RoutePath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use strata_run::engine::SlotAction;

use super::openai::{self, ApiError};
use super::{read_body, respond, AppState};

/// The longest file name a slot file may have.
const MAX_NAME: usize = 255;

pub async fn action(
    State(s): State<Arc<AppState>>,
    RoutePath(id): RoutePath<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            s.authorize(&headers)?;
            let Some(dir) = &s.options.slot_save_path else {
                return Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "slot actions are off: start strata serve with --slot-save-path DIR",
                ));
            };
            let engine = &s.ready()?.engine;
            let slot: usize = id.parse().map_err(|_| ApiError::bad(format!("{id:?} is not a slot id (0, 1, ...)")))?;
            let asked = uri.query().unwrap_or("").split('&').find_map(|p| p.strip_prefix("action="));
            let (action, filename) = match asked {
                Some("erase") => (SlotAction::Erase, None),
                Some(kind @ ("save" | "restore")) => {
                    let f = openai::object(&read_body(body).await?)?;
                    let name = f.get("filename").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::bad("filename must be the name of a file in the --slot-save-path folder")
                    })?;
                    let path = slot_file(dir, name)?;
                    let action = if kind == "save" { SlotAction::Save(path) } else { SlotAction::Restore(path) };
                    (action, Some(name.to_string()))
                }
                other => {
                    return Err(ApiError::bad(format!("action {other:?}: ?action= must be save, restore or erase")))
                }
            };
            let failure = match action {
                SlotAction::Save(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let kind = action.clone();
            engine.slot_action(slot, action, Box::new(move |outcome| drop(tx.send(outcome)))).map_err(ApiError::bad)?;
            let done = rx
                .await
                .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the engine dropped the slot action"))?
                .map_err(|e| ApiError::new(failure, e))?;
            let body = match kind {
                SlotAction::Save(_) => json!({"id_slot": slot, "filename": filename, "n_saved": done.tokens,
                                              "n_written": done.bytes, "timings": {"save_ms": done.ms}}),
                SlotAction::Restore(_) => json!({"id_slot": slot, "filename": filename, "n_restored": done.tokens,
                                                 "n_read": done.bytes, "timings": {"restore_ms": done.ms}}),
                SlotAction::Erase => json!({"id_slot": slot, "n_erased": done.tokens}),
            };
            Ok(Json(body).into_response())
        }
        .await,
    )
}

/// The file `name` in `dir`: a plain file name (no folders, not `.` or `..`, no control
/// characters, at most 255 bytes), so that no request reaches outside the folder.
fn slot_file(dir: &Path, name: &str) -> Result<PathBuf, ApiError> {
    let plain = !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == '\\' || c == ':' || c.is_control());
    if !plain {
        return Err(ApiError::bad(format!(
            "filename {name:?} must be a plain file name (no folders, at most {MAX_NAME} bytes)"
        )));
    }
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_taken() {
        let dir = Path::new("/slots");
        assert_eq!(slot_file(dir, "slot1.bin").unwrap(), Path::new("/slots/slot1.bin"));
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "a\\b", "c:x", "a\nb", &"x".repeat(256)] {
            assert!(slot_file(dir, bad).is_err(), "{bad:?}");
        }
    }
}
