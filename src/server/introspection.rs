//! What the model's process says about itself, as llama-server does: `/props` (the model, the
//! context, the slots, the template, the build), `/slots` (each slot's state; `--slots`) and
//! `/metrics` (Prometheus' text format; `--metrics`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::openai::{self, ApiError};
use super::{respond, AppState};

pub async fn props(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    respond((|| {
        s.authorize(&headers)?;
        let r = s.ready()?;
        let mut params = openai::sampling_json(&r.sampling);
        params["n_predict"] = json!(r.max_tokens.map_or(-1, |n| n as i64));
        params["seed"] = json!(r.seed.map_or(-1, |s| s as i64));
        let (vision, audio) = r.model.modalities();
        Ok(Json(json!({
            "default_generation_settings": {"n_ctx": r.engine.n_ctx_slot(), "params": params},
            "total_slots": r.n_slots,
            "model_alias": r.alias,
            "model_path": r.model.path,
            "chat_template": r.template.source(),
            "bos_token": r.render.bos_token,
            "eos_token": r.render.eos_token,
            "modalities": {"vision": vision, "audio": audio},
            "endpoint_slots": s.options.slots,
            "endpoint_metrics": s.options.metrics,
            // The model's process answers only while awake; the supervisor says when it sleeps.
            "is_sleeping": false,
            "build_info": format!("strata {}", env!("CARGO_PKG_VERSION")),
        }))
        .into_response())
    })())
}

pub async fn slots(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    respond((|| {
        s.authorize(&headers)?;
        if !s.options.slots {
            return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "/slots is off: start strata serve with --slots"));
        }
        Ok(Json(s.ready()?.engine.slots()).into_response())
    })())
}

pub async fn metrics(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    respond((|| {
        s.authorize(&headers)?;
        if !s.options.metrics {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "/metrics is off: start strata serve with --metrics",
            ));
        }
        let (metrics, gauges) = s.ready()?.engine.scrape();
        let headers = [
            (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8".to_string()),
            (header::HeaderName::from_static("process-start-time-unix"), s.started.to_string()),
        ];
        Ok((headers, metrics.prometheus(&gauges)).into_response())
    })())
}
